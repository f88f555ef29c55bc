"""key list/add/remove/passwd through the real CLI: passwords rotate, data stays readable."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from cbr_agent.errors import UsageError
from cbr_agent.repository import Repository
from cbr_agent.repository.keys import remove_key
from tests.integration.engine.conftest import PASSWORD
from tests.integration.engine.treeutil import write


def keys(engine, password: str = PASSWORD) -> list[dict]:
    res = engine.cli("key", "list", "--json", env={"CBR_AGENT_PASSWORD": password})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_add_list_remove_and_the_guards(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"data")
    assert engine.cli("backup", str(tmp_path / "src")).returncode == 0
    [only] = keys(engine)
    assert only["current"] is True and only["kdf"].startswith("scrypt")
    # the only key, which is also the key in use: refused
    res = engine.cli("key", "remove", only["id"][:8])
    assert res.returncode == 2 and "refusing" in res.stderr
    # a second password from the environment, a third from a file
    res = engine.cli("key", "add", "--json", env={"CBR_AGENT_NEW_PASSWORD": "second secret"})
    assert res.returncode == 0, res.stderr
    second = json.loads(res.stdout)["added"]
    pw_file = tmp_path / "third.txt"
    pw_file.write_text("third secret\n")
    res = engine.cli("key", "add", "--new-password-file", str(pw_file), "--json")
    third = json.loads(res.stdout)["added"]
    assert "second secret" not in res.stdout + res.stderr
    listed = keys(engine, "third secret")
    assert {k["id"] for k in listed} == {only["id"], second, third}
    assert [k["id"] for k in listed if k["current"]] == [third]
    # every password opens the same repository and its snapshot
    for password in (PASSWORD, "second secret", "third secret"):
        res = engine.cli("snapshots", "--json", env={"CBR_AGENT_PASSWORD": password})
        assert res.returncode == 0 and len(json.loads(res.stdout)) == 1
    # the key in use cannot be removed; another one can, by prefix
    res = engine.cli("key", "remove", third[:10], env={"CBR_AGENT_PASSWORD": "third secret"})
    assert res.returncode == 2 and "opened" in res.stderr
    res = engine.cli("key", "remove", second[:10], env={"CBR_AGENT_PASSWORD": "third secret"})
    assert res.returncode == 0 and second[:16] in res.stdout
    res = engine.cli("snapshots", env={"CBR_AGENT_PASSWORD": "second secret"})
    assert res.returncode == 12
    res = engine.cli("key", "remove", "ffff")
    assert res.returncode == 1 and "no key matches" in res.stderr


def test_the_last_key_is_never_removed(engine) -> None:
    repo = Repository.open(str(engine.repo_path), PASSWORD)
    repo.key_name = None  # as if the key in use were unknown: the last-key guard alone must hold
    [(name, _size)] = list(repo.backend.list("keys"))
    with pytest.raises(UsageError, match="last key"):
        remove_key(repo, name)
    assert list(repo.backend.list("keys"))


def test_passwd_rotates_the_password_and_warns_about_the_old_one(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"data")
    assert engine.cli("backup", str(tmp_path / "src")).returncode == 0
    res = engine.cli("key", "passwd", "--json", env={"CBR_AGENT_NEW_PASSWORD": "rotated"})
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert "CBR_AGENT_PASSWORD" in res.stderr and "rotated" not in res.stderr
    assert engine.cli("snapshots").returncode == 12  # the old password is gone
    listed = keys(engine, "rotated")
    assert [k["id"] for k in listed] == [out["added"]] and out["removed"] not in {k["id"] for k in listed}
    res = engine.cli("restore", "latest", "--target", str(tmp_path / "r"),
                     env={"CBR_AGENT_PASSWORD": "rotated"})
    assert res.returncode == 0, res.stderr


def test_no_new_password_source_is_a_usage_error(engine, tmp_path: Path) -> None:
    res = engine.cli("key", "add", stdin=subprocess.DEVNULL)
    assert res.returncode == 2 and "CBR_AGENT_NEW_PASSWORD" in res.stderr
    res = engine.cli("key", "add", "--new-password", "visible")  # never on the command line
    assert res.returncode == 2
    empty = tmp_path / "empty"
    empty.write_text("\n")
    res = engine.cli("key", "add", "--new-password-file", str(empty))
    assert res.returncode == 2 and "empty" in res.stderr
    res = engine.cli("key", "add", "--new-password-file", str(tmp_path / "missing"))
    assert res.returncode == 2 and "cannot read" in res.stderr
    assert len(keys(engine)) == 1


def _on_terminal(engine, args: list[str], typed: list[str]) -> tuple[int, str]:
    master, slave = os.openpty()

    def controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "cbr_agent", *args], env=engine.env(), stdin=slave,
                            stdout=slave, stderr=slave, preexec_fn=controlling_tty, close_fds=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    for line in typed:
        while b"password" not in seen.rsplit(b"\n", 1)[-1] and time.monotonic() < deadline:
            seen += os.read(master, 1024)
        os.write(master, line.encode() + b"\n")
        seen += b"\n"
    code = proc.wait(timeout=60)
    try:
        while chunk := os.read(master, 1024):
            seen += chunk
    except OSError:
        pass
    os.close(master)
    return code, seen.decode(errors="replace")


def test_the_new_password_is_prompted_for_twice_on_a_terminal(engine) -> None:
    code, screen = _on_terminal(engine, ["key", "add"], ["typed secret", "typed secret"])
    assert code == 0, screen
    assert "typed secret" not in screen  # not echoed
    res = engine.cli("snapshots", env={"CBR_AGENT_PASSWORD": "typed secret"})
    assert res.returncode == 0
    code, screen = _on_terminal(engine, ["key", "add"], ["one", "other"])
    assert code == 2 and "differ" in screen
