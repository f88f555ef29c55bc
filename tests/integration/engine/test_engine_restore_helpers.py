"""Restores of many small files from a local repository use helper processes (real subprocesses): the
same tree as the threads restore, failures reported per file, and a helper killed mid-restore loses
nothing and leaves no temporary name behind."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cbr_agent.backup.run import backup_paths
from cbr_agent.restore import restorer as restorer_mod
from cbr_agent.restore.contents import ContentWriter, jobs_of
from cbr_agent.restore.helpers import RestoreHelpers
from cbr_agent.restore.restorer import Restorer
from tests.integration.engine.test_engine_corruption import flip_byte_of_blob
from tests.integration.engine.treeutil import assert_same_tree, build_tree, inode_groups, random_bytes, write

PER_DIR = 40


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    # a few dozen files make a batch, and a restore of a few hundred starts helpers
    monkeypatch.setattr(restorer_mod, "BATCH_FILES", PER_DIR)
    monkeypatch.setattr(restorer_mod, "HELPER_BATCH_FILES", PER_DIR)


def _small_files(root: Path, dirs: int) -> int:
    for d in range(dirs):
        for f in range(PER_DIR):
            write(root / f"d{d}" / f"f{f:03d}.txt", b"line %d of %d\n" % (f, d) * (1 + f % 7),
                  mtime_ns=10**18 + f)
    return dirs * PER_DIR


def _restore(repo, out: Path, processes: int | str = 2) -> Restorer:
    restorer = Restorer(repo, str(out), processes=processes)
    restorer.run(repo.find_snapshot("latest").tree)
    return restorer


def test_helpers_restore_the_same_tree(engine, tmp_path: Path, small_batches) -> None:
    src = tmp_path / "src"
    n = _small_files(src / "many", dirs=8)   # first: the walk takes the last entry first
    build_tree(src / "all-kinds")             # hard links, a sparse file, a fifo, long names, xattrs
    backup_paths(engine.settings(), [str(src)])
    restorer = _restore(engine.open(), tmp_path / "out")
    summary = restorer.summary
    assert summary.errors == [] and summary.warnings == []
    assert restorer.batches_by_helpers > 0 and restorer.batches_redone == 0
    assert summary.files >= n
    out = tmp_path / "out" / str(src).lstrip("/")
    assert_same_tree(src, out)
    assert inode_groups(out / "all-kinds") == [{"text.txt", "sub/hardlink-to-text"}]
    assert list(out.rglob(".cbr-restore-*")) == []


def test_one_process_or_a_small_restore_starts_no_helper(engine, tmp_path: Path, small_batches,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    _small_files(src, dirs=4)
    backup_paths(engine.settings(), [str(src)])
    started: list[int] = []
    start = RestoreHelpers.start
    monkeypatch.setattr(RestoreHelpers, "start", lambda self: (started.append(1), start(self)))
    assert _restore(engine.open(), tmp_path / "one", processes=1).batches_by_helpers == 0
    monkeypatch.setattr(restorer_mod, "HELPER_BATCH_FILES", 10 * PER_DIR)
    assert _restore(engine.open(), tmp_path / "small").batches_by_helpers == 0
    assert started == []
    assert_same_tree(src, tmp_path / "small" / str(src).lstrip("/"))


def test_a_batch_of_larger_blobs_stays_with_the_threads(engine, tmp_path: Path, small_batches,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restorer_mod, "HELPER_BLOB", 8 * 1024)  # the test chunker's blobs average ~16 KiB
    src = tmp_path / "src"
    _small_files(src / "small", dirs=4)                 # walked first: four batches of tiny files
    for i in range(PER_DIR):                            # then one batch of larger files
        write(src / "a-large" / f"l{i:03d}.bin", random_bytes(20_000 + 500 * i, i))
    backup_paths(engine.settings(), [str(src)])
    writers: dict[str, set[str]] = {}
    write_ = ContentWriter.write

    def recording_write(self: ContentWriter, job, *args):
        writers.setdefault(Path(job.final).parent.name, set()).add(threading.current_thread().name)
        return write_(self, job, *args)

    monkeypatch.setattr(ContentWriter, "write", recording_write)
    restorer = _restore(engine.open(), tmp_path / "out")
    assert restorer.summary.errors == [] and restorer.batches_by_helpers > 0
    # larger blobs: written by this process's restore threads (decompression and decryption release the
    # GIL), never handed to a helper; tiny ones went to the helper (or, with it busy, to this process)
    assert writers["a-large"] and all(name.startswith("restore") for name in writers["a-large"])
    assert_same_tree(src, tmp_path / "out" / str(src).lstrip("/"))


def test_a_remote_store_is_read_by_threads_only(engine, tmp_path: Path, small_batches) -> None:
    from cbr_agent.repository import Repository
    from cbr_agent.repository.backend import DirectoryBackend
    from cbr_agent.repository.backends.faulty import FaultyBackend
    from tests.integration.engine.conftest import PASSWORD

    src = tmp_path / "src"
    _small_files(src, dirs=4)
    backup_paths(engine.settings(), [str(src)])
    # a helper reads packs by path: a store that is not a local directory stays with this process
    remote = Repository.open(FaultyBackend(DirectoryBackend(engine.repo_path)), PASSWORD)
    assert _restore(remote, tmp_path / "out").batches_by_helpers == 0
    assert_same_tree(src, tmp_path / "out" / str(src).lstrip("/"))


def test_a_damaged_blob_fails_only_its_file_in_a_helper(engine, tmp_path: Path, small_batches) -> None:
    src = tmp_path / "src"
    n = _small_files(src, dirs=6)
    backup_paths(engine.settings(), [str(src)])
    repo = engine.open()
    victim_blob = bytes.fromhex(_content_of(repo, src / "d5" / "f003.txt")[0])
    flip_byte_of_blob(engine.repo_path, repo, victim_blob)
    restorer = _restore(engine.open(), tmp_path / "out")
    summary = restorer.summary
    assert restorer.batches_by_helpers > 0
    assert summary.files == n - 1 and summary.files_failed == 1
    [error] = summary.errors
    assert "d5/f003.txt: not restored" in error and victim_blob.hex() in error
    out = tmp_path / "out" / str(src).lstrip("/")
    assert not (out / "d5" / "f003.txt").exists()
    assert (out / "d5" / "f004.txt").read_bytes() == (src / "d5" / "f004.txt").read_bytes()
    assert list(out.rglob(".cbr-restore-*")) == []


def _content_of(repo, path: Path) -> list[str]:
    from cbr_agent.repository import decode_tree

    tree = repo.find_snapshot("latest").tree
    for part in path.parts[1:]:
        node = next(n for n in decode_tree(repo.load_blob(bytes.fromhex(tree))) if n["name"] == part)
        tree = node.get("subtree")
    return node["content"]


def test_a_helper_killed_mid_restore_loses_no_file(engine, tmp_path: Path, small_batches,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restorer_mod, "BATCH_FILES", 5 * PER_DIR)  # a batch takes the helper a while
    src = tmp_path / "src"
    n = _small_files(src, dirs=15)
    backup_paths(engine.settings(), [str(src)])
    out = tmp_path / "out"
    seen: dict[str, object] = {}
    submit = RestoreHelpers.try_submit

    def kill_while_writing(pid: int, jobs: list) -> None:
        # freeze the helper once it has begun writing its first batch, so that it dies holding a
        # half-done batch (a temporary name or two on disk) and one waiting; then kill -9 it
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(os.path.exists(j.final) for j in jobs):
            time.sleep(0.0002)
        os.kill(pid, signal.SIGSTOP)
        seen["left"] = sum(os.path.exists(j.tmp) for j in jobs)
        time.sleep(0.3)  # the restore goes on meanwhile: its next batch is done here
        os.kill(pid, signal.SIGKILL)
        seen["killed"] = True

    def spying_submit(self: RestoreHelpers, items) -> bool:
        accepted = submit(self, items)
        if accepted and "killer" not in seen:
            seen["killer"] = threading.Thread(target=kill_while_writing, daemon=True,
                                              args=(self.pids()[0], jobs_of(items)))
            seen["killer"].start()
        return accepted

    monkeypatch.setattr(RestoreHelpers, "try_submit", spying_submit)
    restorer = _restore(engine.open(), out)
    seen["killer"].join(20)
    summary = restorer.summary
    assert seen.get("killed") and restorer.batches_redone >= 1
    assert summary.errors == [] and summary.files == n, summary.errors[:3]
    assert_same_tree(src, out / str(src).lstrip("/"))
    assert list(out.rglob(".cbr-restore-*")) == []
