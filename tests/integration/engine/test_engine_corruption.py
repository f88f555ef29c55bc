"""A flipped byte in a pack: check names it, restore of other files works, the damaged file fails loudly."""

from __future__ import annotations

from pathlib import Path

from cbr_agent.backup.run import backup_paths
from tests.integration.engine.treeutil import random_bytes, write


def flip_byte_of_blob(repo_path: Path, repo, blob_id: bytes) -> str:
    loc = repo.blob_location(blob_id)
    pack = repo_path / "data" / loc.pack_id[:2] / loc.pack_id
    data = bytearray(pack.read_bytes())
    data[loc.offset + loc.length // 2] ^= 0x01
    pack.write_bytes(bytes(data))
    return loc.pack_id


def test_flipped_byte_fails_only_the_file_using_it(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "good-1.bin", random_bytes(30_000, 1))
    write(src / "victim.bin", random_bytes(3_000, 2))
    write(src / "good-2.txt", b"fine\n" * 100)
    summary = backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    victim_blob = repo.blob_id((src / "victim.bin").read_bytes())
    pack_id = flip_byte_of_blob(engine.repo_path, repo, victim_blob)

    proc = engine.cli("check", "--read-data")
    assert proc.returncode == 1
    assert victim_blob.hex() in proc.stderr and pack_id in proc.stderr

    proc = engine.cli("restore", summary.snapshot_id[:10], "--target", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    assert "victim.bin: not restored" in proc.stderr and pack_id in proc.stderr
    out = tmp_path / "out" / str(src).lstrip("/")
    assert (out / "good-1.bin").read_bytes() == (src / "good-1.bin").read_bytes()
    assert (out / "good-2.txt").read_bytes() == (src / "good-2.txt").read_bytes()
    assert not (out / "victim.bin").exists(), "wrong bytes must never be written under the real name"
    assert list(out.glob(".cbr-restore-*")) == []


def test_damaged_tree_is_a_clear_error(engine, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "sub" / "f", b"f")
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    snap = repo.find_snapshot("latest")
    flip_byte_of_blob(engine.repo_path, repo, bytes.fromhex(snap.tree))
    proc = engine.cli("restore", "latest", "--target", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert snap.tree in proc.stderr and "Traceback" not in proc.stderr
