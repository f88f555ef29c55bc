"""kill -9 of a real ``cbr-agent backup`` at random moments: nothing is lost, nothing is stored twice."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from cbr_agent.restore.restorer import restore_snapshot
from tests.integration.engine.treeutil import assert_same_tree, random_bytes, write


def referenced_blobs(repo, tree_id: str) -> set[bytes]:
    from cbr_agent.repository import decode_tree

    out: set[bytes] = set()
    stack = [tree_id]
    while stack:
        tid = stack.pop()
        out.add(bytes.fromhex(tid))
        for node in decode_tree(repo.load_blob(bytes.fromhex(tid))):
            if node.get("subtree"):
                stack.append(node["subtree"])
            out.update(bytes.fromhex(c) for c in node.get("content") or ())
    return out


def wait_for_cache_row(db_path: Path, marker: str, proc: subprocess.Popen[bytes]) -> None:
    import sqlite3

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1)
            try:
                paths = [bytes(r[0]) for r in db.execute("SELECT path FROM dirs")]
            finally:
                db.close()
        except sqlite3.Error:
            paths = []
        if any(marker.encode() in p for p in paths):
            return
        time.sleep(0.005)


def make_generation(src: Path, generation: int) -> None:
    # ~20 MB of incompressible data per generation: more than one 16 MiB pack
    for i in range(10):  # in five directories, so that some finish early in a run
        write(src / f"gen{generation}" / f"part{i // 2}" / f"file{i}.bin",
              random_bytes(2_000_000, generation * 100 + i))


def test_kill_9_at_random_points(engine, tmp_path: Path) -> None:
    rng = random.Random(4)
    src = tmp_path / "src"
    make_generation(src, 0)
    write(src / "small.txt", b"small\n" * 10)
    started = time.monotonic()
    first = engine.cli("backup", str(src), "--json")
    wall = time.monotonic() - started  # interpreter start-up included
    assert first.returncode == 0, first.stderr
    first_id = json.loads(first.stdout)["snapshot_id"]
    killed_while_running = reused = 0

    for generation in range(1, 4):
        make_generation(src, generation)
        time.sleep(0.15)
        env = engine.env()
        # checkpoint (flush + index + files cache rows) at every directory: a killed run leaves
        # indexed packs and cache rows behind, which the next run must reuse, not upload again
        env["CBR_AGENT_TEST_CHECKPOINT_SECONDS"] = "0"
        proc = subprocess.Popen([sys.executable, "-m", "cbr_agent", "backup", str(src), "--json"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if generation == 2:
            # right after the run committed its first files cache rows: a kill in mid-run for sure
            wait_for_cache_row(engine.state_dir / "filescache.db", f"/gen{generation}/", proc)
        else:
            time.sleep(rng.uniform(0.3, 1.0) * wall)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        killed_while_running += proc.returncode == -signal.SIGKILL

        check = engine.cli("check")
        assert check.returncode == 0, check.stdout + check.stderr
        repo = engine.open()
        target = tmp_path / f"restore-{generation}"
        result = restore_snapshot(repo, repo.find_snapshot(first_id), str(target))
        assert result.errors == []
        assert (target / str(src).lstrip("/") / "gen0" / "part1" / "file3.bin").read_bytes() == \
            random_bytes(2_000_000, 3)

        indexed_before = set(repo.index._entries)  # what reached the repository (indexed packs)
        done = engine.cli("backup", str(src), "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        repo = engine.open()
        snap = repo.find_snapshot(summary["snapshot_id"])
        needed = referenced_blobs(repo, snap.tree)
        # exactly the blobs that had not reached the repository were stored, none twice
        assert summary["blobs_new"] == len(needed - indexed_before)
        # files of the killed run itself found unchanged: its cache rows were committed and trusted
        reused += summary["files_unchanged"] > 11 + 10 * (generation - 1)
        restored = tmp_path / f"full-{generation}"
        restore_snapshot(repo, snap, str(restored))
        assert_same_tree(src, restored / str(src).lstrip("/"))
    assert killed_while_running >= 2, "the kills came too late to interrupt anything"
    assert reused >= 1, "no killed run got far enough to leave anything for the next one"
    final = engine.cli("check", "--read-data")
    assert final.returncode == 0, final.stderr
