"""A repository locked by another process: exit 11 at once naming the holder, or ``--retry-lock`` waits
for it (the holder is a real second process)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.engine.conftest import PASSWORD
from tests.integration.engine.treeutil import write

#: takes the exclusive lock (as prune does), prints "locked", holds it for argv[2] seconds (or, when
#: that is "stdin", until its stdin closes), then releases it and exits
HOLDER = """
import sys, time
from cbr_agent.repository import Repository
repo = Repository.open(sys.argv[1], sys.argv[3])
with repo.lock(exclusive=True):
    print("locked", flush=True)
    if sys.argv[2] == "stdin":
        sys.stdin.read()
    else:
        time.sleep(float(sys.argv[2]))
"""


def hold_lock(engine, seconds: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(engine.repo_path), seconds, PASSWORD],
                            env=engine.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(30) == 0


def test_a_locked_repository_is_exit_11_at_once_naming_the_holder(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"data")
    holder = hold_lock(engine, "stdin")
    try:
        for args in (["backup", str(tmp_path / "src")], ["prune"], ["forget", "--keep-last", "1"],
                     ["check"]):
            started = time.monotonic()
            proc = engine.cli(*args)
            assert proc.returncode == 11, (args, proc.stderr)
            assert f"repository is locked: exclusive lock of pid {holder.pid}" in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr and time.monotonic() - started < 10
        started = time.monotonic()
        proc = engine.cli("backup", "--retry-lock", "1s", str(tmp_path / "src"))
        assert proc.returncode == 11, proc.stderr
        assert f"pid {holder.pid}" in proc.stderr and "; still locked after waiting 1 s" in proc.stderr
        assert time.monotonic() - started >= 1.0
    finally:
        release(holder)
    assert engine.cli("snapshots", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize("command", [["backup"], ["prune"]])
def test_retry_lock_waits_for_a_lock_released_a_second_later(engine, tmp_path: Path, command) -> None:
    src = write(tmp_path / "src" / "f", b"data").parent
    args = [*command, str(src)] if command == ["backup"] else command
    holder = hold_lock(engine, "1.0")
    started = time.monotonic()
    proc = engine.cli(*args, "--retry-lock", "10s")
    waited = time.monotonic() - started
    assert holder.wait(30) == 0
    assert proc.returncode == 0, proc.stderr
    assert 0.5 <= waited < 10, waited
    if command == ["backup"]:
        assert len(engine.open().list_snapshots()) == 1


def test_retry_lock_takes_a_duration(engine) -> None:
    proc = engine.cli("prune", "--retry-lock", "soon")
    assert proc.returncode == 2
    assert "'soon' is not a duration like '30s'" in proc.stderr and "Traceback" not in proc.stderr


def test_run_once_meeting_a_lock_is_exit_11_or_waits_with_retry_lock(engine, tmp_path: Path) -> None:
    src = write(tmp_path / "src" / "f", b"data").parent
    assert engine.cli("path", "add", str(src)).returncode == 0  # on the embedded control plane
    holder = hold_lock(engine, "stdin")
    try:
        proc = engine.cli("run", "--once")
        assert proc.returncode == 11, proc.stderr
        assert f"repository is locked: exclusive lock of pid {holder.pid}" in proc.stderr
    finally:
        release(holder)
    holder = hold_lock(engine, "1.0")
    proc = engine.cli("run", "--once", "--retry-lock", "10s")
    assert holder.wait(30) == 0
    assert proc.returncode == 0, proc.stderr
    assert len(engine.open().list_snapshots()) == 1


def test_retry_lock_without_once_is_a_usage_error(engine) -> None:
    proc = engine.cli("run", "--retry-lock", "30s")
    assert proc.returncode == 2
    assert "--retry-lock goes with --once" in proc.stderr and "Traceback" not in proc.stderr
