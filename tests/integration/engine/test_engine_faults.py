"""Faults and bad input: a clear message, the documented exit code, no hang, nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from cbr_agent.backup.run import RunOptions, backup_paths
from cbr_agent.restore.restorer import restore_snapshot
from tests.integration.engine.conftest import PASSWORD, SMALL_CHUNKS
from tests.integration.engine.treeutil import IS_ROOT, random_bytes, write


def test_wrong_password_is_exit_12(engine, tmp_path: Path) -> None:
    write(tmp_path / "src" / "f", b"x")
    env_run = engine.cli
    engine_env = engine.env()
    engine_env["CBR_AGENT_PASSWORD"] = "not the password"
    import subprocess
    import sys

    for args in (["backup", str(tmp_path / "src")], ["snapshots"]):
        proc = subprocess.run([sys.executable, "-m", "cbr_agent", *args], env=engine_env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 12, proc.stderr
        assert "wrong password" in proc.stderr and "Traceback" not in proc.stderr
        assert "not the password" not in proc.stderr + proc.stdout
    assert env_run("snapshots").returncode == 0


def test_missing_repository_is_exit_10(engine, tmp_path: Path) -> None:
    shutil.rmtree(engine.repo_path)
    write(tmp_path / "src" / "f", b"x")
    for args in (["snapshots"], ["backup", str(tmp_path / "src")], ["check"],
                 ["restore", "latest", "--target", str(tmp_path / "out")]):
        proc = engine.cli(*args)
        assert proc.returncode == 10, (args, proc.stderr)
        assert "no repository" in proc.stderr and "cbr-agent init" in proc.stderr
    assert not engine.repo_path.exists(), "an explicitly configured repository is never created silently"


def test_fifo_socket_and_symlink_loops_do_not_hang(engine, tmp_path: Path) -> None:
    import socket

    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "pipe")
    os.symlink("b", src / "a")
    os.symlink("a", src / "b")
    os.symlink(".", src / "self")
    os.symlink("..", src / "up")
    sock = socket.socket(socket.AF_UNIX)
    short = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        sock.bind(str(short / "s"))
        os.rename(short / "s", src / "socket")
        proc = engine.cli("backup", str(src), "--json", timeout=60)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["others"] == 6 and summary["warnings"] == []
    finally:
        sock.close()
        shutil.rmtree(short)
    repo = engine.open()
    restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"))
    out = tmp_path / "out" / str(src).lstrip("/")
    assert stat.S_ISFIFO(os.lstat(out / "pipe").st_mode)
    assert os.readlink(out / "a") == "b" and os.readlink(out / "self") == "."


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv"),
                    reason="needs root and setpriv to take away the power to read everything")
def test_permission_denied_is_a_warning_exit_3(engine, tmp_path: Path) -> None:
    import subprocess
    import sys

    src = tmp_path / "src"
    write(src / "readable.txt", b"ok")
    write(src / "secret.txt", b"no")
    os.chmod(src / "secret.txt", 0)
    (src / "closed").mkdir()
    write(src / "closed" / "inside", b"x")
    os.chmod(src / "closed", 0)
    # root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH obeys file modes like any user
    drop = "-dac_override,-dac_read_search"
    proc = subprocess.run(["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--",
                           sys.executable, "-m", "cbr_agent", "backup", str(src), "--json"],
                          env=engine.env(), capture_output=True, text=True, timeout=60)
    os.chmod(src / "closed", 0o755)
    assert proc.returncode == 3, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["snapshot_id"]
    text = "\n".join(summary["warnings"])
    assert "secret.txt: not backed up: permission denied" in text
    assert "closed: cannot list directory: permission denied" in text
    assert "warning:" not in proc.stdout
    repo = engine.open()
    restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"))
    out = tmp_path / "out" / str(src).lstrip("/")
    assert (out / "readable.txt").read_bytes() == b"ok"
    assert not (out / "secret.txt").exists()
    assert (out / "closed").is_dir()


def test_vanishing_files_are_warnings_not_failures(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    names = [f"f{i:04d}" for i in range(1500)]
    for name in names:
        write(src / name, name.encode() * 50)
    stop = threading.Event()

    def delete() -> None:
        for name in reversed(names):
            if stop.is_set():
                return
            os.unlink(src / name)

    deleter = threading.Thread(target=delete)
    deleter.start()
    try:
        summary = backup_paths(engine.settings(), [str(src)])
    finally:
        stop.set()
        deleter.join()
    assert summary.snapshot_id
    for warning in summary.warnings:
        assert "vanished during backup" in warning, warning
    repo = engine.open()
    restore_snapshot(repo, repo.find_snapshot("latest"), str(tmp_path / "out"))
    for path in (tmp_path / "out" / str(src).lstrip("/")).iterdir():
        assert path.read_bytes() == path.name.encode() * 50


def test_file_changing_while_read_is_reported(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "growing.log", random_bytes(3_000_000, 1))
    stop = threading.Event()

    def grow() -> None:
        with open(src / "growing.log", "ab") as fh:
            while not stop.is_set():
                fh.write(b"x" * 100)
                fh.flush()

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        summary = backup_paths(engine.settings(), [str(src)])
    finally:
        stop.set()
        writer.join()
    assert summary.snapshot_id
    assert any("changed while being read" in w for w in summary.warnings), summary.warnings


def test_cancel_writes_no_snapshot(engine, tmp_path: Path) -> None:
    from cbr_agent.errors import Cancelled

    src = tmp_path / "src"
    for i in range(50):
        write(src / f"f{i}", random_bytes(50_000, i))
    cancel = threading.Event()
    calls = []

    def progress(info) -> None:
        calls.append(info)

    cancel.set()
    with pytest.raises(Cancelled):
        backup_paths(engine.settings(), [str(src)], RunOptions(cancel=cancel, progress=progress))
    assert engine.open().list_snapshots() == []
    # and the next run completes
    assert backup_paths(engine.settings(), [str(src)]).snapshot_id


def test_a_backup_keeps_the_collector_quiet_and_leaves_it_as_it_found_it(engine, tmp_path: Path) -> None:
    """gctune: young collections rarer during the run, nothing left frozen after it, cancelled or not."""
    import gc

    from cbr_agent.errors import Cancelled
    from cbr_agent.gctune import BACKUP_THRESHOLD

    src = tmp_path / "src"
    for i in range(20):
        write(src / f"f{i}", random_bytes(5_000, i))
    before = gc.get_threshold()
    during: list[int] = []
    summary = backup_paths(engine.settings(), [str(src)],
                           RunOptions(progress=lambda _info: during.append(gc.get_threshold()[0])))
    assert summary.snapshot_id and during and set(during) == {BACKUP_THRESHOLD}
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        backup_paths(engine.settings(), [str(src)], RunOptions(cancel=cancel))
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


@pytest.mark.skipif(not IS_ROOT, reason="needs root to mount a small tmpfs")
def test_full_repository_disk_stops_the_backup_cleanly(engine, tmp_path: Path) -> None:
    import subprocess

    from cbr_agent.repository import Repository

    small = tmp_path / "small-disk"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        Repository.init(str(small / "repo"), PASSWORD, chunker=SMALL_CHUNKS)
        src = tmp_path / "src"
        for i in range(4):
            write(src / f"f{i}", random_bytes(1_500_000, i))  # incompressible, more than the disk
        env = engine.env()
        env["CBR_AGENT_REPOSITORY"] = str(small / "repo")
        proc = subprocess.run([sys.executable, "-m", "cbr_agent", "backup", str(src)], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, proc.stderr
        assert "disk is full" in proc.stderr and "Traceback" not in proc.stderr
        assert Repository.open(str(small / "repo"), PASSWORD).list_snapshots() == []
    finally:
        subprocess.run(["umount", "-l", str(small)])
