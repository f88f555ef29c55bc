"""Intact data must always be restorable with the tool: a lost index, damaged snapshots, truncated packs and
a read-only repository, through the real CLI (issue 10, items 1-4)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cbr_agent.backup.run import backup_paths
from tests.integration.engine.treeutil import assert_same_tree, build_tree, random_bytes, write


def _restored(target: Path, src: Path) -> Path:
    return target / str(src).lstrip("/")


def _files(root: Path) -> dict[str, bytes]:
    """Every object file of a repository (relative path -> bytes), to prove a command changed nothing."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.relative_to(root).parts[0] != "locks"}


def _pack_path(repo_path: Path, pack_id: str) -> Path:
    return repo_path / "data" / pack_id[:2] / pack_id


def _flip(path: Path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x10
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------- item 1
def test_lost_index_is_named_by_check_and_rebuilt_by_repair_index(engine, tmp_path: Path) -> None:
    src = build_tree(tmp_path / "src")
    summary = backup_paths(engine.settings(), [str(src)])
    index_files = list((engine.repo_path / "index").iterdir())
    assert index_files
    for f in index_files:
        f.unlink()  # a partial rsync, a NAS mishap
    packs_before = {p.name: p.read_bytes() for p in (engine.repo_path / "data").rglob("*") if p.is_file()}

    proc = engine.cli("check")
    assert proc.returncode == 1, proc.stderr
    assert "index is missing" in proc.stderr and "cbr-agent repair index" in proc.stderr
    assert "left by an interrupted run" not in proc.stderr, "the packs are not leftovers: they hold the data"
    proc = engine.cli("prune")
    assert proc.returncode == 1 and "cbr-agent repair index" in proc.stderr

    proc = engine.cli("repair", "index")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 1 index files" in proc.stdout
    packs_after = {p.name: p.read_bytes() for p in (engine.repo_path / "data").rglob("*") if p.is_file()}
    assert packs_after == packs_before, "prune must delete nothing, repair index must only read packs"

    proc = engine.cli("restore", summary.snapshot_id[:12], "--target", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert_same_tree(src, _restored(tmp_path / "out", src))
    proc = engine.cli("check", "--read-data")
    assert proc.returncode == 0, proc.stderr
    assert "no errors were found" in proc.stdout and "warning" not in proc.stderr


def test_repair_index_replaces_a_damaged_index_file_json(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", random_bytes(200_000, 7))
    backup_paths(engine.settings(), [str(src)])
    (old,) = list((engine.repo_path / "index").iterdir())
    _flip(old, 40)
    assert engine.cli("check").returncode == 1
    proc = engine.cli("repair", "index", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["index_files_written"] == 1 and report["index_files_deleted"] == 1
    assert report["blobs"] >= 2 and report["warnings"] == []
    assert not old.exists(), "the damaged index file goes once the new one is durable"
    assert engine.cli("check", "--read-data").returncode == 0


# ---------------------------------------------------------------------------------------------- item 2
def _two_snapshots(engine, tmp_path: Path) -> tuple[Path, str, str]:
    src = tmp_path / "src"
    write(src / "keep.bin", random_bytes(100_000, 1))
    first = backup_paths(engine.settings(), [str(src)]).snapshot_id
    write(src / "later.bin", random_bytes(100_000, 2))
    second = backup_paths(engine.settings(), [str(src)]).snapshot_id
    return src, first, second


def test_prune_refuses_with_a_damaged_snapshot_and_names_repair(engine, tmp_path: Path) -> None:
    src, first, second = _two_snapshots(engine, tmp_path)
    _flip(engine.repo_path / "snapshots" / second, 30)
    before = _files(engine.repo_path)

    proc = engine.cli("prune")
    assert proc.returncode == 1
    assert second in proc.stderr and "cbr-agent repair snapshots" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _files(engine.repo_path) == before, "nothing may be deleted while a snapshot cannot be read"

    proc = engine.cli("repair", "snapshots", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"snapshot {second}: cannot be read" in proc.stdout and "would be removed" in proc.stdout
    assert _files(engine.repo_path) == before, "--dry-run changes nothing"

    proc = engine.cli("repair", "snapshots")
    assert proc.returncode == 0, proc.stderr
    assert f"snapshot {second}: cannot be read" in proc.stdout and ": removed" in proc.stdout
    assert not (engine.repo_path / "snapshots" / second).exists()
    proc = engine.cli("prune")
    assert proc.returncode == 0, proc.stderr
    proc = engine.cli("restore", first[:10], "--target", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert (_restored(tmp_path / "out", src) / "keep.bin").read_bytes() == (src / "keep.bin").read_bytes()
    assert engine.cli("check", "--read-data").returncode == 0


def test_forget_by_id_and_prefix_even_a_damaged_snapshot(engine, tmp_path: Path) -> None:
    _src, first, second = _two_snapshots(engine, tmp_path)
    _flip(engine.repo_path / "snapshots" / second, 30)
    proc = engine.cli("forget", second[:10], "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would forget 1 snapshot\n" in proc.stdout and "(cannot be read)" in proc.stdout
    assert (engine.repo_path / "snapshots" / second).exists()
    proc = engine.cli("forget", second[:10], "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["forget"] == [second]
    assert sorted(p.name for p in (engine.repo_path / "snapshots").iterdir()) == [first]

    assert engine.cli("forget", "zz").returncode == 1  # no such snapshot: one line, exit 1
    proc = engine.cli("forget", first, "--keep-last", "1")
    assert proc.returncode == 2 and "not both" in proc.stderr


def test_repair_snapshots_rewrites_a_partly_readable_snapshot(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "good" / "a.txt", b"alpha\n" * 1000)
    write(src / "lost" / "b.txt", b"beta\n" * 1000)
    write(src / "c.bin", random_bytes(3_000, 3))  # below the minimum chunk size: one blob each
    write(src / "gone.bin", random_bytes(3_000, 4))
    # gone.bin's data first goes into a pack of its own (by an earlier backup of a copy), to be lost
    write(tmp_path / "early" / "copy.bin", (src / "gone.bin").read_bytes())
    early = backup_paths(engine.settings(), [str(tmp_path / "early")]).snapshot_id
    backup_paths(engine.settings(), [str(src)])
    assert engine.cli("forget", early).returncode == 0
    repo = engine.open()
    snap = repo.find_snapshot("latest")
    # damage the directory listing of lost/ (one tree blob) and lose the pack of gone.bin's data
    lost_tree = _tree_of(repo, snap.tree, [*Path(str(src)).parts[1:], "lost"])
    loc = repo.blob_location(bytes.fromhex(lost_tree))
    _flip(_pack_path(engine.repo_path, loc.pack_id), loc.offset + loc.length // 2)
    gone_loc = repo.blob_location(repo.blob_id((src / "gone.bin").read_bytes()))
    c_loc = repo.blob_location(repo.blob_id((src / "c.bin").read_bytes()))
    assert gone_loc.pack_id not in (loc.pack_id, c_loc.pack_id)
    _pack_path(engine.repo_path, gone_loc.pack_id).unlink()

    proc = engine.cli("repair", "snapshots")
    assert proc.returncode == 0, proc.stderr
    assert f"snapshot {snap.id}: rewritten as" in proc.stdout
    assert f"{src}/lost/: directory listing {lost_tree} is damaged" in proc.stdout
    assert f"{src}/gone.bin: data blob" in proc.stdout and "is missing" in proc.stdout

    repo = engine.open()
    (new,) = repo.list_snapshots()
    assert new.id != snap.id and "repaired" in new.tags
    assert new.summary["repaired"]["from"] == snap.id and new.summary["repaired"]["removed_count"] == 2
    # what a rewritten directory held is no longer what its totals said: they are left out, up to the root
    src_node = _node(repo, new.tree, Path(str(src)).parts[1:])
    assert "totals" not in src_node
    assert _node(repo, new.tree, [*Path(str(src)).parts[1:], "good"])["totals"]["files"] == 1
    proc = engine.cli("restore", "latest", "--target", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    out = _restored(tmp_path / "out", src)
    assert (out / "good" / "a.txt").read_bytes() == (src / "good" / "a.txt").read_bytes()
    assert (out / "c.bin").read_bytes() == (src / "c.bin").read_bytes()
    assert not (out / "lost").exists() and not (out / "gone.bin").exists()
    proc = engine.cli("prune")  # drops the index entries of the lost pack, and the damaged tree
    assert proc.returncode == 0, proc.stderr
    proc = engine.cli("check", "--read-data")
    assert proc.returncode == 0, proc.stderr
    proc = engine.cli("repair", "snapshots")
    assert proc.returncode == 0 and "0 damaged" in proc.stdout  # a second run finds nothing to do


def _tree_of(repo, root: str, parts: list[str]) -> str:
    return _node(repo, root, parts)["subtree"]


def _node(repo, root: str, parts) -> dict:
    """The node of the directory at ``parts`` below the tree ``root``."""
    from cbr_agent.repository import decode_tree

    tree, node = root, {}
    for part in parts:
        node = next(n for n in decode_tree(repo.load_blob(bytes.fromhex(tree))) if n["name"] == part)
        tree = node["subtree"]
    return node


# ---------------------------------------------------------------------------------------------- item 3
@pytest.mark.parametrize("size", [0, 1, 3])
def test_check_names_a_truncated_pack(engine, tmp_path: Path, size: int) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", random_bytes(3_000, 5))  # one blob
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    loc = repo.blob_location(repo.blob_id((src / "a.bin").read_bytes()))
    pack = _pack_path(engine.repo_path, loc.pack_id)
    pack.write_bytes(pack.read_bytes()[:size])
    for args in (("check",), ("check", "--read-data")):
        proc = engine.cli(*args)
        assert proc.returncode == 1, proc.stderr
        assert f"pack {loc.pack_id}" in proc.stderr and "truncated" in proc.stderr
        assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


def test_check_names_a_truncated_pack_no_index_names(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", b"a")
    backup_paths(engine.settings(), [str(src)])
    stray = _pack_path(engine.repo_path, "ab" * 32)
    stray.write_bytes(b"\x01\x02")  # the leftover of a bad copy, unreferenced
    proc = engine.cli("check")
    assert proc.returncode == 0, proc.stderr
    assert f"pack {'ab' * 32}: not in any index, and its header is damaged" in proc.stderr


# ---------------------------------------------------------------------------------------------- item 4
def _unshare_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _unshare_works(), reason="needs unshare -m (a mount namespace) for a read-only bind")
def test_check_on_a_read_only_mount_runs_without_a_lock(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", random_bytes(100_000, 6))
    backup_paths(engine.settings(), [str(src)])
    before = _files(engine.repo_path)
    repo = str(engine.repo_path)
    # a read-only bind mount of the repository over itself, in a private mount namespace (root ignores
    # file modes, not a read-only mount)
    script = (f'mount --bind -o ro "$1" "$1" && touch "$1/probe" 2>/dev/null && exit 99; '
              f'exec "{sys.executable}" -m cbr_agent check --read-data')
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", repo],
                          env=engine.env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 99, "the bind mount was not read-only"
    assert proc.returncode == 0, proc.stderr
    assert "could not lock the repository" in proc.stderr and "read-only" in proc.stderr
    assert "no errors were found" in proc.stdout
    assert _files(engine.repo_path) == before
