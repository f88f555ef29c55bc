"""A flipped byte in any repository object: the right error, named by check --read-data; other data loads."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from cbr_agent.errors import IntegrityError
from cbr_agent.repository import Repository
from cbr_agent.repository.check import run_check
from cbr_agent.repository.prune import prune
from tests.unit.repository.repo_helpers import init_repo, read_files, store_files

FILES = {f"d{i % 3}/f{i}": os.urandom(3000 + 100 * i) for i in range(12)}


@pytest.fixture
def stored(tmp_path) -> tuple[Repository, str]:
    repo = init_repo(tmp_path / "r")
    return repo, store_files(repo, FILES, pack_size=8 * 1024)


def _flip(path: Path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x40
    path.write_bytes(bytes(data))


def _pack_path(repo: Repository, pack_id: str) -> Path:
    return Path(repo.location) / "data" / pack_id[:2] / pack_id


def test_flipped_byte_in_a_data_blob(stored: tuple[Repository, str]) -> None:
    repo, sid = stored
    victim_data = next(repo.new_chunker().chunks(io.BytesIO(FILES["d0/f0"])))
    victim = repo.blob_id(victim_data)
    loc = repo.blob_location(victim)
    assert loc is not None
    _flip(_pack_path(repo, loc.pack_id), loc.offset + loc.length // 2)
    repo = Repository.open(repo.location, "pw")
    with pytest.raises(IntegrityError, match=f"blob {victim.hex()} in pack {loc.pack_id}"):
        repo.load_blob(victim)
    # every other blob still loads, including neighbours in the same pack
    chunker = repo.new_chunker()
    others = [c for path, data in FILES.items() for c in chunker.chunks(io.BytesIO(data)) if c != victim_data]
    assert len(others) > 10
    for chunk in others:
        assert repo.load_blob(repo.blob_id(chunk)) == chunk
    report = run_check(repo, read_data=True)
    named = {str(p) for p in report.errors}
    assert any(victim.hex() in p and loc.pack_id in p for p in named), named
    assert any(f"pack {loc.pack_id}" in p for p in named)
    # and the file that uses it, in the snapshot that holds the file
    assert any(p.startswith(f"snapshot {sid}") and "/d0/f0: data blob" in p and "damaged" in p for p in named)
    # neighbours that are intact are not blamed
    assert sum("/d0/" in p or "/d1/" in p or "/d2/" in p for p in named) == 1


def test_flipped_byte_in_a_pack_header_is_seen_without_read_data(stored: tuple[Repository, str]) -> None:
    repo, _sid = stored
    pack_id, size = next(iter(repo.backend.list("data")))
    _flip(_pack_path(repo, pack_id), size - 10)  # inside the sealed header
    report = run_check(Repository.open(repo.location, "pw"))
    assert any(pack_id in str(p) and "header" in str(p) for p in report.errors), report.errors


def test_flipped_byte_in_an_index_file(stored: tuple[Repository, str]) -> None:
    repo, sid = stored
    (index_name,) = [n for n, _ in repo.backend.list("index")]
    _flip(Path(repo.location) / "index" / index_name, 40)
    repo = Repository.open(repo.location, "pw")  # opens: damaged index files are skipped and reported
    assert index_name in repo.damaged_index_files
    report = run_check(repo)
    assert any(f"index/{index_name}" in str(p) for p in report.errors)
    with pytest.raises(IntegrityError, match="not in the repository index"):
        read_files(repo, sid)
    # prune rebuilds the index from the pack headers, and then everything is whole again
    prune(repo)
    assert run_check(repo, read_data=True).ok
    assert read_files(repo, sid) == FILES


def test_flipped_byte_in_a_snapshot(stored: tuple[Repository, str]) -> None:
    repo, sid = stored
    other = store_files(repo, {"x/y": b"other snapshot"})
    _flip(Path(repo.location) / "snapshots" / sid, 30)
    repo = Repository.open(repo.location, "pw")
    assert [s.id for s in repo.list_snapshots()] == [other]
    with pytest.raises(IntegrityError, match=f"snapshot {sid}"):
        repo.find_snapshot(sid[:10])
    report = run_check(repo, read_data=True)
    assert [p.object for p in report.errors] == [f"snapshot {sid}"]
    assert read_files(repo, other) == {"x/y": b"other snapshot"}


def test_flipped_byte_in_a_tree_blob(stored: tuple[Repository, str]) -> None:
    repo, sid = stored
    root = bytes.fromhex(repo.find_snapshot(sid).tree)
    loc = repo.blob_location(root)
    assert loc is not None
    _flip(_pack_path(repo, loc.pack_id), loc.offset + 20)
    report = run_check(Repository.open(repo.location, "pw"))
    assert any(sid in str(p) and root.hex() in str(p) for p in report.errors), report.errors


def test_truncated_pack_and_missing_pack(stored: tuple[Repository, str]) -> None:
    repo, _sid = stored
    packs = sorted(repo.backend.list("data"))
    (a, _), (b, _) = packs[0], packs[1]
    _pack_path(repo, a).write_bytes(_pack_path(repo, a).read_bytes()[:100])
    _pack_path(repo, b).unlink()
    report = run_check(Repository.open(repo.location, "pw"))
    text = "\n".join(str(p) for p in report.errors)
    assert f"pack {a}" in text and f"pack {b}: missing" in text


def test_flipped_byte_in_a_second_key_file_is_named_by_check(stored: tuple[Repository, str]) -> None:
    from tests.unit.repository.repo_helpers import CHEAP_KDF

    repo, _sid = stored
    spare = repo.add_key("spare password", kdf=CHEAP_KDF)
    _flip(Path(repo.location) / "keys" / spare, 50)
    repo = Repository.open(repo.location, "pw")  # the intact key still opens it
    report = run_check(repo)
    assert [p.object for p in report.errors] == [f"key file keys/{spare}"]
