"""A directory whose tree is spliced from its previous listing (the journal named a few entries): the
entries at the open slots are replaced by what they resolve to, or left out when that is nothing, the
rest stays as it was; the tree is written to a real repository and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from cbr_agent.backup.runstate import RunState
from cbr_agent.backup.treesaver import DirTask, TreeAssembler
from cbr_agent.crypto import KdfParams
from cbr_agent.repository import Repository, decode_tree
from cbr_agent.repository.tree import encode_listing


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(str(tmp_path / "repo"), "pw", kdf=KdfParams(n=2**10))


def file_node(name: str, size: int) -> dict:
    return {"name": name, "type": "file", "size": size, "content": [f"{size:064x}"]}


BEFORE = [file_node("a", 1), file_node("b", 2), {"name": "c", "type": "dir", "subtree": "cd" * 32,
                                                  "totals": {"files": 5, "bytes": 50, "dirs": 2}},
          file_node("d", 4)]


@pytest.mark.parametrize("order", [(0, 1), (1, 0)], ids=["in order", "last first"])
def test_a_spliced_tree_replaces_the_open_entries_and_leaves_out_the_vanished(repo: Repository,
                                                                             order: tuple[int, int]) -> None:
    state = RunState(None)
    with repo.writer() as writer:
        trees = TreeAssembler(repo, writer, None, state)
        task = DirTask("/data", {"name": "data", "type": "dir"}, None, 0, (1, 2))
        first = trees.add_listing(task, encode_listing(list(BEFORE)), [1, 3])
        resolved = [file_node("b", 20), None]  # b changed; d vanished before it was read
        for i in order:
            trees.resolve(task, first + i, resolved[i])
        assert not trees.done.is_set()  # the walker has not said it is done with the directory
        trees.walked(task)
        assert trees.done.is_set()
    nodes = decode_tree(repo.load_blob(bytes.fromhex(trees.root_tree or "")))
    assert nodes == [BEFORE[0], file_node("b", 20), BEFORE[2]]
    assert state.stats.dirs == 1


def test_a_spliced_tree_with_no_open_entries_is_the_previous_one(repo: Repository) -> None:
    with repo.writer() as writer:
        trees = TreeAssembler(repo, writer, None, RunState(None))
        task = DirTask("/data", {"name": "data", "type": "dir"}, None, 0, (1, 2))
        trees.add_listing(task, encode_listing(list(BEFORE)), [])
        trees.walked(task)
    assert decode_tree(repo.load_blob(bytes.fromhex(trees.root_tree or ""))) == BEFORE
