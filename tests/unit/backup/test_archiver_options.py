"""Archiver takes its run options as one ArchiverOptions (or their fields as keywords, as before), and a
run hands every blob to the writer: the tree it returns loads back from the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from cbr_agent.backup.archiver import Archiver, ArchiverOptions, Root
from cbr_agent.backup.smallfiles import BATCH_FILES as SMALL_BATCH
from cbr_agent.chunking import ChunkerParams
from cbr_agent.crypto import KdfParams
from cbr_agent.pathrules import ExcludeMatcher
from cbr_agent.repository import Repository, decode_tree


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(str(tmp_path / "repo"), "pw", kdf=KdfParams(n=2**10),
                           chunker=ChunkerParams(min_size=1024, avg_size=4096, max_size=16384))


def _backup(repo: Repository, src: Path, **how: object) -> str:
    with repo.writer() as writer:
        archiver = Archiver(repo, writer, **how)  # type: ignore[arg-type]
        tree = archiver.run([Root(str(src), ExcludeMatcher(str(src), []))])
    return tree


def test_options_and_keywords_back_up_the_same_tree(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "small").write_bytes(b"small file\n" * 10)
    (src / "large").write_bytes(b"".join(b"line %d of a larger file\n" % i for i in range(4000)))
    options = ArchiverOptions(cache=None, parent_tree=None, parent_time_ns=0, one_file_system=False)
    by_options = _backup(repo, src, options=options)
    by_keywords = _backup(repo, src, cache=None, parent_tree=None, parent_time_ns=0, one_file_system=False)
    assert by_options == by_keywords
    nodes = decode_tree(repo.load_blob(bytes.fromhex(by_options)))
    for part in [p for p in str(src).split("/") if p]:  # intermediate directories lead to the root
        (node,) = [n for n in nodes if n["name"] == part]
        nodes = decode_tree(repo.load_blob(bytes.fromhex(node["subtree"])))
    for node in nodes:
        content = b"".join(repo.load_blob(bytes.fromhex(c)) for c in node["content"])
        assert content == (src / node["name"]).read_bytes()
    assert sorted(n["name"] for n in nodes) == ["large", "small"]


def test_options_and_keywords_together_are_refused(repo: Repository) -> None:
    options = ArchiverOptions(cache=None, parent_tree=None, parent_time_ns=0, one_file_system=False)
    with repo.writer() as writer, pytest.raises(TypeError, match="not both"):
        Archiver(repo, writer, options, readers=1)


@pytest.mark.parametrize("limit", [1, 1 << 30], ids=["small", "large"])
def test_files_cache_rows_waiting_past_the_limit_bring_a_checkpoint_early(repo: Repository, tmp_path: Path,
                                                                       limit: int) -> None:
    """Rows wait in memory for a checkpoint; past ``checkpoint_rows`` bytes of them one comes at the next
    directory, whatever the interval. The run's checkpoint is the real one (flush, then commit)."""
    from cbr_agent.backup.filescache import FilesCache

    src = tmp_path / "src"
    for d in range(6):  # a batch of small files each: directories complete while the walk goes on
        (src / f"d{d}").mkdir(parents=True)
        for f in range(SMALL_BATCH):
            (src / f"d{d}" / f"f{f}").write_bytes(b"%d/%d\n" % (d, f))
    cache = FilesCache(tmp_path / "filescache.db", repo.id)
    committed: list[int] = []
    with repo.writer() as writer:
        def checkpoint() -> None:
            staged, touched = cache.take_staged()
            writer.flush()
            cache.commit(staged, touched)
            committed.append(len(staged))

        options = ArchiverOptions(cache=cache, parent_tree=None, parent_time_ns=0, one_file_system=False,
                                  checkpoint=checkpoint, checkpoint_interval=3600.0, checkpoint_rows=limit)
        Archiver(repo, writer, options).run([Root(str(src), ExcludeMatcher(str(src), []))])
    rows = [d for d in range(6) if cache.get(str(src / f"d{d}").encode()) is not None]
    if limit == 1:
        assert len(committed) >= 3 and len(rows) >= 3, (committed, rows)  # a few rows at a time
    else:
        assert committed == [] and rows == [], "below the limit, only the interval brings a checkpoint"
    cache.close()
