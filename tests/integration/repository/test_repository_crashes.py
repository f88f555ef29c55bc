"""kill -9 of prune and of a backup at random points: check passes, every snapshot still loads, the next run
completes (and reuses what reached the repository)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cbr_agent.repository import Repository
from cbr_agent.repository.check import run_check
from cbr_agent.repository.prune import prune
from tests.integration.repository.crash_data import files_for
from tests.unit.repository.repo_helpers import chunk_ids, init_repo, minutes_ago, read_files, store_files

ROOT = Path(__file__).resolve().parents[3]


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.repository.crash_child", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_until(proc: subprocess.Popen[str], lines: int) -> bool:
    """Let the child print ``lines`` progress lines, then SIGKILL it; True if it was killed mid-way."""
    assert proc.stdout is not None
    for seen, line in enumerate(proc.stdout, start=1):
        if line.strip() == "done":
            break
        if seen >= lines:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
    proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return False


def _assert_whole(location: str, expected: dict[str, dict[str, bytes]]) -> None:
    repo = Repository.open(location, "pw")
    report = run_check(repo)
    assert report.ok, [str(p) for p in report.errors]
    assert {s.id for s in repo.list_snapshots()} == set(expected)
    for sid, files in expected.items():
        assert read_files(repo, sid) == files


@pytest.mark.parametrize("seed", range(6))
def test_prune_killed_at_a_random_point(tmp_path, seed: int) -> None:
    rng = random.Random(seed)
    repo = init_repo(tmp_path / "r")
    sets = [files_for(100 + i, 25) for i in range(4)]
    sets[1].update(dict(list(sets[0].items())[:10]))  # overlap, so packs are partly used after forget
    sids = [
        store_files(repo, files, when=minutes_ago(40 - i), pack_size=24 * 1024)
        for i, files in enumerate(sets)
    ]
    for sid in (sids[0], sids[2]):
        repo.forget_snapshot(sid)
    expected = {sids[1]: sets[1], sids[3]: sets[3]}
    _run_until(_spawn("prune", repo.location), rng.randint(1, 25))
    _assert_whole(repo.location, expected)
    # the next prune (the dead run's lock is stale) completes and leaves a clean repository
    fresh = Repository.open(repo.location, "pw")
    prune(fresh)
    final = run_check(fresh, read_data=True)
    assert final.ok and not final.warnings, [str(p) for p in final.errors + final.warnings]
    _assert_whole(repo.location, expected)
    assert True  # the last points may fall after the end: then prune simply completed


@pytest.mark.parametrize("seed", range(4))
def test_backup_killed_at_a_random_point(tmp_path, seed: int) -> None:
    rng = random.Random(seed)
    kill_at = 90 if seed == 0 else rng.randint(5, 150)
    repo = init_repo(tmp_path / "r")
    first = files_for(1, 20)
    sid = store_files(repo, first)
    killed = _run_until(_spawn("backup", repo.location, "2", "60"), kill_at)
    reopened = Repository.open(repo.location, "pw")
    report = run_check(reopened, read_data=True)
    assert report.ok, [str(p) for p in report.errors]
    assert read_files(reopened, sid) == first
    # the next backup of the same files completes and does not store again what was indexed already
    wanted = chunk_ids(reopened, files_for(2, 60))
    already = {b for b in wanted if reopened.has_blob(b)}
    stats: dict = {}
    again = store_files(reopened, files_for(2, 60), stats=stats)
    assert read_files(reopened, again) == files_for(2, 60)
    trees = 5  # four directories and the root
    assert stats["blobs_new"] <= len(wanted - already) + trees
    assert stats["blobs_duplicate"] >= len(already)
    if not killed:
        assert already == wanted  # the child finished: everything was there already
    elif kill_at >= 80:
        assert already, "a backup killed late had indexed packs; they must be reused"
    assert run_check(reopened, read_data=True).ok
