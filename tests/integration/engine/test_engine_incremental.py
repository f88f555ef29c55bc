"""Incremental backups: unchanged files are not read, changes cost only the changed chunks."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from cbr_agent.backup.run import RunOptions, backup_paths
from cbr_agent.repository.prune import prune
from cbr_agent.restore.restorer import restore_snapshot
from tests.integration.engine.treeutil import assert_same_tree, build_tree, random_bytes, write

# files younger than the cache's racy window are re-read on purpose; let them age
SETTLE = 0.15


def backup(engine, src: Path):
    time.sleep(SETTLE)
    summary = backup_paths(engine.settings(), [str(src)])
    assert summary.warnings == []
    return summary


def restore_and_compare(engine, src: Path, tmp: Path, snapshot_id: str) -> None:
    repo = engine.open()
    target = tmp / f"out-{snapshot_id[:8]}"
    result = restore_snapshot(repo, repo.find_snapshot(snapshot_id), str(target))
    assert result.errors == []
    assert_same_tree(src, target / str(src).lstrip("/"))


def test_unchanged_rerun_reads_nothing(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    first = backup(engine, src)
    second = backup(engine, src)
    assert second.parent == first.snapshot_id
    assert second.files_new == 0 and second.files_changed == 0
    assert second.files_unchanged == first.files_new
    # only the trees of the directories above src may change (the state dir lives next to it)
    assert second.bytes_read == 0 and second.bytes_added < 2000


def test_parent_snapshot_is_used_without_files_cache(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    backup(engine, src)
    for name in os.listdir(engine.state_dir):
        if name.startswith("filescache.db"):
            os.unlink(engine.state_dir / name)
    second = backup(engine, src)
    assert second.files_new == 0 and second.files_changed == 0 and second.bytes_read == 0


def test_changes_cost_only_changed_chunks(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    big = random_bytes(2_000_000, 7)
    write(src / "big.bin", big)
    write(src / "log.txt", b"line\n" * 1000)
    write(src / "gone.txt", b"to be deleted")
    write(src / "old-name.bin", random_bytes(200_000, 8))
    write(src / "mode.sh", b"#!/bin/sh\n")
    backup(engine, src)

    # insert in the middle of a large file: content-defined chunking keeps the other chunks
    write(src / "big.bin", big[:1_000_000] + b"INSERTED" * 20 + big[1_000_000:])
    with open(src / "log.txt", "ab") as fh:  # append
        fh.write(b"one more line\n")
    os.unlink(src / "gone.txt")  # delete
    os.rename(src / "old-name.bin", src / "new-name.bin")  # rename
    os.chmod(src / "mode.sh", 0o700)  # chmod only
    second = backup(engine, src)

    assert second.files_changed >= 3 and second.files_new == 1  # new-name.bin is a new name
    # the insert touches one or two chunks of ~20 KB each; the append one; rename and chmod none
    assert second.bytes_added < 150_000, second
    assert second.blobs_new < 15
    restore_and_compare(engine, src, tmp_path, second.snapshot_id)


def test_dedup_across_files_and_snapshots(engine, tmp_path: Path) -> None:
    data = random_bytes(500_000, 3)
    src = tmp_path / "src"
    write(src / "a.bin", data)
    write(src / "copy-of-a.bin", data)
    first = backup(engine, src)
    assert 500_000 <= first.bytes_added < 560_000  # stored once, plus trees
    other = tmp_path / "other"
    shutil.copytree(src, other)
    second = backup(engine, other)
    assert second.files_new == 2 and second.bytes_read == 1_000_000
    assert second.bytes_added < 10_000  # only trees are new


def test_cache_rows_are_not_trusted_when_blobs_are_gone(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", random_bytes(100_000, 5))
    backup(engine, src)
    repo = engine.open()
    for snap in repo.list_snapshots():
        repo.forget_snapshot(snap.id)
    prune(repo)
    second = backup(engine, src)
    assert second.files_unchanged == 0 and second.bytes_added >= 100_000
    restore_and_compare(engine, src, tmp_path, second.snapshot_id)


def test_racy_files_are_read_again(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "fresh.txt", b"v1")
    backup_paths(engine.settings(), [str(src)])  # right away: within the racy window
    # same size, and within the same timestamp tick a change may leave mtime/ctime equal
    write(src / "fresh.txt", b"v2")
    second = backup_paths(engine.settings(), [str(src)])
    assert second.files_unchanged == 0
    restore_and_compare(engine, src, tmp_path, second.snapshot_id)


def test_dry_run_stores_nothing(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    before = sorted(p.name for p in (engine.repo_path / "data").rglob("*"))
    summary = backup_paths(engine.settings(), [str(src)], RunOptions(dry_run=True))
    assert summary.snapshot_id is None and summary.bytes_added > 0
    assert sorted(p.name for p in (engine.repo_path / "data").rglob("*")) == before
    assert engine.open().list_snapshots() == []


def test_change_deep_inside_an_unchanged_listing(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in ("a", "b"):
        for i in range(5):
            write(src / d / f"f{i}", f"{d}{i}".encode() * 100)
        write(src / d / "deeper" / "x", b"x" * 1000)
    write(src / "top.txt", b"top")
    backup(engine, src)
    # a file rewritten in place below an unchanged directory listing; a new file even deeper
    write(src / "a" / "f3", b"changed content " * 10)
    write(src / "b" / "deeper" / "new", b"new file")
    second = backup(engine, src)
    assert second.files_changed == 1 and second.files_new == 1
    assert second.files_unchanged == 12
    restore_and_compare(engine, src, tmp_path, second.snapshot_id)
    third = backup(engine, src)
    assert third.files_unchanged == 14 and third.bytes_read == 0
    restore_and_compare(engine, src, tmp_path, third.snapshot_id)


def test_bytes_are_split_by_new_changed_and_unchanged_files(engine, tmp_path: Path) -> None:
    """Small files (batched) and big ones (chunked) alike: the summary's bytes by kind of file."""
    src = tmp_path / "src"
    big, small = 700_000, 3_000
    write(src / "big-kept.bin", random_bytes(big, 1))
    write(src / "big-changed.bin", random_bytes(big, 2))
    write(src / "small-kept.txt", random_bytes(small, 3))
    write(src / "small-changed.txt", random_bytes(small, 4))
    first = backup(engine, src)
    assert (first.bytes_new, first.bytes_changed, first.bytes_unchanged) == (2 * big + 2 * small, 0, 0)
    write(src / "big-changed.bin", random_bytes(big + 10, 5))
    write(src / "small-changed.txt", random_bytes(small + 10, 6))
    write(src / "big-new.bin", random_bytes(big, 7))
    write(src / "small-new.txt", random_bytes(small, 8))
    second = backup(engine, src)
    assert (second.files_new, second.files_changed, second.files_unchanged) == (2, 2, 2)
    assert second.bytes_new == big + small
    assert second.bytes_changed == big + small + 20
    assert second.bytes_unchanged == big + small
    assert second.bytes_new + second.bytes_changed + second.bytes_unchanged == second.bytes_total
