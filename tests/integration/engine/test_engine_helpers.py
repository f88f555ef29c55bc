"""A real ``cbr-agent backup`` with helper processes for small files: the restore is exact, and a backup
killed with SIGKILL leaves no helper behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.integration.engine.treeutil import assert_same_tree, build_tree, write


def small_files(root: Path, n: int) -> None:
    for i in range(n):
        write(root / f"d{i % 37:02d}" / f"s{i:05d}.txt", b"row %d;" % i * (i % 97))


def test_backup_with_helper_processes_restores_exactly(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    small_files(src / "many", 3000)
    env = {"CBR_AGENT_BACKUP_PROCESSES": "3"}
    done = engine.cli("--log-level", "debug", "backup", str(src), env=env)
    assert done.returncode == 0, done.stderr
    used = re.search(r"small files: (\d+) batches, (\d+) by helper processes", done.stderr)
    assert used and int(used[2]) > 0, done.stderr  # the helpers did take part
    out = tmp_path / "out"
    restored = engine.cli("restore", "latest", "--target", str(out))
    assert restored.returncode == 0, restored.stderr
    assert_same_tree(src, out / src.relative_to("/"))


def test_one_process_means_no_helpers(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    small_files(src, 3000)
    env = {"CBR_AGENT_BACKUP_PROCESSES": "1"}
    done = engine.cli("--log-level", "debug", "backup", str(src), env=env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"small files: \d+ batches, 0 by helper processes", done.stderr), done.stderr


def test_kill_9_of_a_backup_leaves_no_helper_behind(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    small_files(src, 40_000)
    env = {**engine.env(), "CBR_AGENT_BACKUP_PROCESSES": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "cbr_agent", "backup", str(src)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        helpers: list[psutil.Process] = []
        while len(helpers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            helpers = parent.children()
            time.sleep(0.01)
        assert len(helpers) == 2, "the backup finished before its helpers could be seen"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _gone, alive = psutil.wait_procs(helpers, timeout=10)
        assert not alive, f"helpers outlived the backup: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
