"""Archiver takes its run options as one ArchiverOptions (or their fields as keywords, as before), and a
run hands every blob to the writer: the tree it returns loads back from the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from cbr_agent.backup.archiver import Archiver, ArchiverOptions, Root
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
