"""repair index / repair snapshots at the repository level, check on a lost index and without a lock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from cbr_agent.errors import RepositoryError, RepositoryLocked
from cbr_agent.repository import Repository
from cbr_agent.repository.check import check_lock, run_check
from cbr_agent.repository.repair import rebuild_index, repair_snapshots
from tests.unit.repository.repo_helpers import init_repo, minutes_ago, read_files, store_files

FILES = {f"d{i % 3}/f{i}": os.urandom(3000 + 100 * i) for i in range(12)}
FILES["d1/one"] = os.urandom(900)  # below the minimum chunk size: one blob


class RecordingBackend:
    """The real backend, with every write and delete recorded in order (to check the crash-safe order)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.location = inner.location
        self.ops: list[tuple[str, str]] = []

    def put(self, name: str, data: Any) -> None:
        self.ops.append(("put", name))
        self.inner.put(name, data)

    def delete(self, name: str) -> None:
        self.ops.append(("delete", name))
        self.inner.delete(name)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)


class ReadOnlyBackend(RecordingBackend):
    """A read-only disk (a NAS mounted ro, a write-once copy): every write fails as EROFS does."""

    def put(self, name: str, data: Any) -> None:
        raise RepositoryError(f"repository is on a read-only file system (writing {name})")

    def delete(self, name: str) -> None:
        raise RepositoryError(f"repository is on a read-only file system (deleting {name})")


def _over(repo: Repository, backend_cls: type[RecordingBackend]) -> tuple[Repository, Any]:
    backend = backend_cls(repo.backend)
    other = Repository(backend, repo.key, repo.config)
    other.load_index()
    return other, backend


def _pack_path(repo: Repository, pack_id: str) -> Path:
    return Path(repo.location) / "data" / pack_id[:2] / pack_id


def _flip(path: Path, pos: int) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= 0x08
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------- index
def test_rebuild_index_writes_the_new_index_before_removing_the_old(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    sids = [store_files(repo, {f"x/{i}": os.urandom(5000)}, pack_size=4096) for i in range(3)]
    old_files = {f"index/{n}" for n, _ in repo.backend.list("index")}
    assert len(old_files) >= 3
    spied, backend = _over(repo, RecordingBackend)
    report = rebuild_index(spied)
    puts = [i for i, (op, name) in enumerate(backend.ops) if op == "put" and name.startswith("index/")]
    deletes = [i for i, (op, name) in enumerate(backend.ops) if op == "delete"]
    assert puts and deletes and max(puts) < min(deletes), backend.ops
    assert {name for op, name in backend.ops if op == "delete"} == old_files
    assert not any(name.startswith("data/") for _op, name in backend.ops), "packs are only read"
    assert report.index_files_written == 1 and report.index_files_deleted == len(old_files)
    reopened = Repository.open(repo.location, "pw")
    for i, sid in enumerate(sids):
        assert list(read_files(reopened, sid)) == [f"x/{i}"]
    assert run_check(reopened, read_data=True).ok


def test_rebuild_keeps_old_entries_of_a_pack_whose_header_is_damaged(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    sid = store_files(repo, FILES, pack_size=8 * 1024)
    victim = sorted(repo.index.packs())[0]
    path = _pack_path(repo, victim)
    _flip(path, path.stat().st_size - 10)  # inside the sealed header
    report = rebuild_index(repo)
    assert len(report.warnings) == 1 and victim in report.warnings[0]
    assert "kept the" in report.warnings[0]
    assert read_files(Repository.open(repo.location, "pw"), sid) == FILES  # its blobs are still usable


def test_rebuild_names_a_pack_it_cannot_index(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    store_files(repo, FILES, pack_size=8 * 1024)
    for name, _ in list(repo.backend.list("index")):
        repo.backend.delete("index/" + name)
    victim = sorted(p for p, _ in repo.backend.list("data"))[0]
    _pack_path(repo, victim).write_bytes(b"\x00\x01")
    report = rebuild_index(repo)
    assert len(report.warnings) == 1
    assert f"header of pack {victim} is damaged: pack is truncated" in report.warnings[0]
    assert "cannot be indexed" in report.warnings[0]
    check = run_check(Repository.open(repo.location, "pw"))
    assert not check.ok and any(victim in str(p) for p in check.warnings)


def test_check_says_the_index_is_incomplete_when_one_index_file_is_lost(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    store_files(repo, {"a/x": os.urandom(5000)}, when=minutes_ago(5))
    store_files(repo, {"b/y": os.urandom(5000)})
    newest = max(repo.backend.list("index"), key=lambda item: os.stat(
        Path(repo.location) / "index" / item[0]).st_mtime_ns)[0]
    repo.backend.delete("index/" + newest)
    report = run_check(Repository.open(repo.location, "pw"))
    assert report.errors[0].object == "index"
    assert "incomplete" in report.errors[0].reason and "cbr-agent repair index" in report.errors[0].reason
    assert not any("is missing" in p.reason for p in report.errors[1:]), "one summary, not one per blob"
    assert any("holds blobs that snapshots use" in p.reason for p in report.warnings)
    rebuild_index(repo)
    assert run_check(Repository.open(repo.location, "pw"), read_data=True).ok


# ---------------------------------------------------------------------------------------------- snapshots
def test_repair_snapshots_dry_run_changes_nothing_and_reports_the_same(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    sid = store_files(repo, FILES, pack_size=8 * 1024)
    victim = repo.blob_id(FILES["d1/one"])
    loc = repo.blob_location(victim)
    _flip(_pack_path(repo, loc.pack_id), loc.offset + 20)
    before = sorted(p.name for p in Path(repo.location).rglob("*") if p.is_file())

    dry = repair_snapshots(repo, dry_run=True)
    assert dry.actions == [], "without read_data only missing blobs count; the blob is present"
    dry = repair_snapshots(repo, dry_run=True, read_data=True)
    assert [(a.snapshot, a.action) for a in dry.actions] == [(sid, "rewrite")]
    assert dry.actions[0].removed == [f"/d1/one: data blob {victim.hex()} is damaged (authentication failed)"]
    assert sorted(p.name for p in Path(repo.location).rglob("*") if p.is_file()) == before

    done = repair_snapshots(repo, read_data=True)
    assert [a.removed for a in done.actions] == [a.removed for a in dry.actions]
    (snap,) = repo.list_snapshots()
    assert snap.id == done.actions[0].new_id and snap.tags == ["repaired"]
    expected = {k: v for k, v in FILES.items() if k != "d1/one"}
    assert read_files(repo, snap.id) == expected


def test_repair_snapshots_finishes_a_repair_killed_before_removing_the_old_snapshot(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    store_files(repo, FILES, pack_size=8 * 1024)
    old = repo.list_snapshots()[0]
    victim = repo.blob_id(FILES["d1/one"])
    loc = repo.blob_location(victim)
    _flip(_pack_path(repo, loc.pack_id), loc.offset + 20)
    # the state a kill between "save the rewritten snapshot" and "remove the old one" leaves
    spied, backend = _over(repo, RecordingBackend)
    backend.delete = lambda name: None  # type: ignore[method-assign]
    first = repair_snapshots(spied, read_data=True)
    assert {s.id for s in repo.list_snapshots()} == {old.id, first.actions[0].new_id}
    again = repair_snapshots(repo, read_data=True)
    assert [(a.snapshot, a.action) for a in again.actions] == [(old.id, "remove")]
    assert "already rewritten as" in again.actions[0].reason
    assert [s.id for s in repo.list_snapshots()] == [first.actions[0].new_id]


def test_repair_snapshots_removes_a_snapshot_whose_root_tree_is_gone(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    keep = store_files(repo, {"a/x": b"kept"}, when=minutes_ago(5))
    lost = store_files(repo, {"b/y": os.urandom(4000)})
    root = bytes.fromhex(repo.find_snapshot(lost).tree)
    loc = repo.blob_location(root)
    _flip(_pack_path(repo, loc.pack_id), loc.offset + 15)
    report = repair_snapshots(repo)
    assert [(a.snapshot, a.action) for a in report.actions] == [(lost, "remove")]
    assert "root directory listing is damaged" in report.actions[0].reason
    assert [s.id for s in repo.list_snapshots()] == [keep]


def test_repair_snapshots_leaves_a_snapshot_it_cannot_read_for_other_reasons(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    sid = store_files(repo, {"a/x": b"x"})

    class FailingDisk(RecordingBackend):  # an I/O error is no proof of damage: never a reason to delete
        def get(self, name: str, *args: Any) -> bytes:
            if name.startswith("snapshots/"):
                raise RepositoryError(f"repository I/O error while reading {name}: Input/output error")
            return self.inner.get(name, *args)

    failing, _backend = _over(repo, FailingDisk)
    report = repair_snapshots(failing)
    assert report.actions == []
    assert report.errors == [f"snapshot {sid}: repository I/O error while reading snapshots/{sid}: "
                             "Input/output error; left alone"]
    assert [s.id for s in repo.list_snapshots()] == [sid]


def test_repair_snapshots_changes_nothing_when_a_pack_cannot_be_read(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    sid = store_files(repo, FILES, pack_size=8 * 1024)
    loc = repo.blob_location(repo.blob_id(FILES["d1/one"]))
    _flip(_pack_path(repo, loc.pack_id), loc.offset + 20)

    class FailingDisk(RecordingBackend):
        def get(self, name: str, *args: Any) -> bytes:
            if name == "data/" + loc.pack_id:
                raise RepositoryError(f"repository I/O error while reading {name}: Input/output error")
            return self.inner.get(name, *args)

    failing, backend = _over(repo, FailingDisk)
    with pytest.raises(RepositoryError, match="Input/output error"):
        repair_snapshots(failing, read_data=True)
    assert [s.id for s in repo.list_snapshots()] == [sid]
    assert not any(name.startswith("snapshots/") for _op, name in backend.ops)


def test_repair_snapshots_refuses_to_work_on_an_incomplete_index(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    sid = store_files(repo, FILES, pack_size=8 * 1024)
    for name, _ in list(repo.backend.list("index")):
        repo.backend.delete("index/" + name)
    repo.load_index()
    before = sorted(p.name for p in Path(repo.location).rglob("*") if p.is_file())
    for dry_run in (True, False):
        with pytest.raises(RepositoryError, match="cbr-agent repair index' first"):
            repair_snapshots(repo, dry_run=dry_run)
    assert sorted(p.name for p in Path(repo.location).rglob("*") if p.is_file()) == before
    rebuild_index(repo)
    assert repair_snapshots(repo).actions == []
    assert read_files(repo, sid) == FILES


# ---------------------------------------------------------------------------------------------- lock
def test_check_on_a_read_only_backend_runs_without_a_lock(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    store_files(repo, FILES)
    ro, _backend = _over(repo, ReadOnlyBackend)
    with pytest.raises(RepositoryError, match="read-only"), ro.lock(exclusive=False):  # what check met
        pass
    with check_lock(ro) as why:
        report = run_check(ro, read_data=True)
    assert why is not None and "read-only file system" in why
    assert report.ok


def test_check_still_refuses_a_repository_locked_by_prune(tmp_path) -> None:
    repo = init_repo(tmp_path / "r")
    other = Repository.open(repo.location, "pw")
    with other.lock(exclusive=True), pytest.raises(RepositoryLocked), check_lock(repo):
        pass
    with check_lock(repo) as why:
        assert why is None
        assert len(list(repo.backend.list("locks"))) == 1
    assert list(repo.backend.list("locks")) == []
