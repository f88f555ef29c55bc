"""The engine's CLI contract, in-process (cli.main.run) and as subprocesses."""

from __future__ import annotations

import json
import os
import stat
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cbr_agent.cli.main import run
from tests.integration.engine.treeutil import BAD_NAME, NEWLINE_NAME, build_tree, write


def run_json(capsys, *args: str) -> tuple[int, object]:
    capsys.readouterr()
    code = run(list(args))
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else None)


def test_init_generates_a_password_file_and_records_the_repository(tmp_path: Path, monkeypatch,
                                                                    capsys) -> None:
    config = tmp_path / "etc" / "agent.toml"
    config.parent.mkdir()
    config.write_text("")
    monkeypatch.setenv("CBR_AGENT_CONFIG", str(config))
    monkeypatch.setenv("CBR_AGENT_INSECURE_TEST_KDF", "1")
    repo = tmp_path / "nas" / "repo"
    assert run(["--state-dir", str(tmp_path / "state"), "init", "--repository", str(repo)]) == 0
    captured = capsys.readouterr()
    password_file = tmp_path / "state" / "repository.password"  # the state dir: writable by the service
    assert not (config.parent / "repository.password").exists()
    assert "KEEP A COPY" in captured.err and str(password_file) in captured.err
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 32 and password not in captured.out + captured.err
    assert str(repo) in config.read_text()
    # later commands find both without being told
    write(tmp_path / "src" / "f", b"data")
    assert run(["--state-dir", str(tmp_path / "state"), "backup", str(tmp_path / "src")]) == 0
    code, snaps = run_json(capsys, "--state-dir", str(tmp_path / "state"), "snapshots", "--json")
    assert code == 0 and len(snaps) == 1
    # init twice refuses
    capsys.readouterr()
    assert run(["--state-dir", str(tmp_path / "state"), "init"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_backup_of_configured_paths_with_a_fresh_default_repository(tmp_path: Path, monkeypatch,
                                                                   capsys) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("")
    monkeypatch.setenv("CBR_AGENT_CONFIG", str(config))
    monkeypatch.setenv("CBR_AGENT_INSECURE_TEST_KDF", "1")
    state = str(tmp_path / "state")
    src = tmp_path / "data"
    write(src / "keep.txt", b"keep")
    write(src / "skip.tmp", b"skip")
    assert run(["--state-dir", state, "register", "--json"]) == 0
    assert run(["--state-dir", state, "path", "add", str(src), "--exclude", "*.tmp"]) == 0
    code, summary = run_json(capsys, "--state-dir", state, "backup", "--json")
    assert code == 0, summary
    assert summary["paths"] == [str(src)] and summary["files_new"] == 1
    assert (tmp_path / "state" / "repository.password").exists()  # generated for the default repository
    assert not (tmp_path / "repository.password").exists()
    code, listing = run_json(capsys, "--state-dir", state, "ls", "latest", str(src), "--json")
    assert [e["path"] for e in listing] == [str(src), str(src / "keep.txt")]


def test_commands_end_to_end(engine, tmp_path: Path, capsys) -> None:
    src = build_tree(tmp_path / "src")
    time.sleep(0.15)
    code, summary = run_json(capsys, "backup", str(src), "--json")
    assert code == 0
    for key in ("snapshot_id", "files_new", "files_changed", "files_unchanged", "bytes_read",
                "bytes_added", "duration", "warnings"):
        assert key in summary
    code, again = run_json(capsys, "backup", str(src), "--json")
    assert again["files_unchanged"] == summary["files_new"] and again["bytes_read"] == 0

    code, snaps = run_json(capsys, "snapshots", "--json")
    assert [s["id"] for s in snaps] == [summary["snapshot_id"], again["snapshot_id"]]
    for s in snaps:
        assert {"id", "time", "host", "paths"} <= set(s)

    capsys.readouterr()
    assert run(["ls", "latest", str(src)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert str(src / "text.txt") in lines
    assert str(src / "new\\nline name") in lines  # one line per path, newline escaped
    assert str(src / "bad-\\xff\\xfe-name") in lines
    code, listing = run_json(capsys, "ls", summary["snapshot_id"][:12], str(src / "sub"), "--json")
    assert [e["path"] for e in listing] == [str(src / "sub"), str(src / "sub" / "deeper"),
                                            str(src / "sub" / "deeper" / "file"),
                                            str(src / "sub" / "hardlink-to-text")]

    target = tmp_path / "out"
    code, res = run_json(capsys, "restore", "latest", "--target", str(target), "--path",
                         str(src / "sub"), "--path", str(src / NEWLINE_NAME), "--json")
    assert code == 0 and res["errors"] == []
    out = target / str(src).lstrip("/")
    assert (out / "sub" / "deeper" / "file").read_bytes() == b"deep file"
    assert (out / NEWLINE_NAME).exists() and not (out / BAD_NAME).exists()

    code, report = run_json(capsys, "check", "--read-data", "--json")
    assert code == 0 and report["ok"]

    assert run(["restore", "latest", "--target", str(target), "--path", "/not/there"]) == 1
    assert "not in the snapshot" in capsys.readouterr().err


def test_restore_dry_run_and_usage_errors(engine, tmp_path: Path, capsys) -> None:
    src = build_tree(tmp_path / "src")
    assert run(["backup", str(src)]) == 0
    assert run(["restore", "latest", "--target", str(tmp_path / "o"), "--dry-run"]) == 0
    assert not (tmp_path / "o").exists()
    assert "would restore" in capsys.readouterr().out
    assert run(["restore", "latest"]) == 2  # --target is required
    assert run(["restore", "nosuchid", "--target", str(tmp_path / "o")]) == 1
    assert "no snapshot matches" in capsys.readouterr().err
    assert run(["forget"]) == 2
    assert "refusing to forget every snapshot" in capsys.readouterr().err
    assert run(["backup", str(src), "relative/does/not/exist"]) == 3
    assert f"{os.path.abspath('relative/does/not/exist')}: does not exist" in capsys.readouterr().err
    assert run(["backup", "relative/does/not/exist"]) == 1
    assert "nothing to back up" in capsys.readouterr().err


def _fake_snapshot(repo, when: datetime, tree: str) -> str:
    from cbr_agent.repository import Snapshot

    return repo.save_snapshot(Snapshot(time=when, host="h", paths=["/p"], tree=tree))


def test_forget_keeps_what_the_policy_says_and_prune_frees_data(engine, tmp_path: Path,
                                                                capsys) -> None:
    src = tmp_path / "src"
    write(src / "f1", os.urandom(50_000))
    code, first = run_json(capsys, "backup", str(src), "--json")
    write(src / "f1", os.urandom(50_000))
    code, second = run_json(capsys, "backup", str(src), "--json")
    repo = engine.open()
    tree = repo.find_snapshot("latest").tree
    base = datetime(2026, 1, 31, 12, tzinfo=timezone.utc)
    for days in (1, 2, 3, 10, 40):
        _fake_snapshot(repo, base - timedelta(days=days), tree)
    code, result = run_json(capsys, "forget", "--keep-last", "1", "--json")
    assert code == 0
    # groups by host and paths: the newest of each group stays
    assert second["snapshot_id"] in result["keep"] and first["snapshot_id"] in result["forget"]
    assert len(result["keep"]) == 2
    code, result = run_json(capsys, "forget", "--keep-last", "1", "--prune", "--json")
    assert code == 0 and result["prune"]["blobs_removed"] >= 0
    assert run(["check", "--read-data"]) == 0
    target = tmp_path / "out"
    assert run(["restore", "latest", "--target", str(target)]) == 0
    assert (target / str(src).lstrip("/") / "f1").read_bytes() == (src / "f1").read_bytes()
    capsys.readouterr()
    assert run(["prune"]) == 0


@pytest.mark.parametrize("args", [["snapshots"], ["check"]])
def test_subprocess_smoke(engine, args: list[str]) -> None:
    proc = engine.cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
