"""A repository kept open (the daemon's) catches up with index files other processes wrote or removed."""

from __future__ import annotations

import os
import shutil

import pytest

from cbr_agent.errors import RepositoryError, RepositoryNotFound
from cbr_agent.repository import Repository
from cbr_agent.repository.check import run_check
from cbr_agent.repository.prune import prune
from tests.unit.repository.repo_helpers import init_repo, minutes_ago, read_files, store_files


def test_new_index_files_are_added_and_a_prune_reloads_them_all(tmp_path) -> None:
    kept = init_repo(tmp_path / "r")
    first = {"a/f": os.urandom(5000)}
    s1 = store_files(kept, first, when=minutes_ago(10))
    other = Repository.open(kept.location, "pw")  # another process
    second = {"b/g": os.urandom(5000)}
    s2 = store_files(other, second, when=minutes_ago(5))
    assert kept.index_files != other.index_files
    kept.refresh_index()
    assert kept.index_files == other.index_files
    assert read_files(kept, s2) == second

    other.forget_snapshot(s1)
    prune(other)  # rewrites the index: an index file the kept handle knows is gone
    kept.refresh_index()
    assert kept.index_files == {name for name, _ in kept.backend.list("index")}
    assert read_files(kept, s2) == second
    assert run_check(kept).ok


def test_a_repository_gone_or_replaced_is_an_error(tmp_path) -> None:
    kept = init_repo(tmp_path / "r")
    shutil.rmtree(tmp_path / "r")
    with pytest.raises(RepositoryNotFound):
        kept.refresh_index()
    init_repo(tmp_path / "r")
    with pytest.raises(RepositoryError, match="replaced"):
        kept.refresh_index()
