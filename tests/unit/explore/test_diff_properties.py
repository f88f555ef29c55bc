"""diff over random pairs of trees stored in a real repository, against a plain comparison of the two
trees' flattened listings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.explore.diff import Differ
from cbr_agent.repository import encode_tree
from tests.unit.repository.repo_helpers import init_repo

names = st.sampled_from(["a", "b", "c", "d"])
leaves = st.one_of(
    st.tuples(st.just("file"), st.sampled_from([b"", b"x", b"y", b"xyz" * 100]),
              st.sampled_from([0o644, 0o600])),
    st.tuples(st.just("symlink"), st.sampled_from(["t1", "t2"]), st.just(0o777)),
)
trees = st.recursive(
    st.dictionaries(names, leaves, max_size=3),
    lambda children: st.dictionaries(
        names, st.one_of(leaves, st.tuples(st.just("dir"), children, st.sampled_from([0o755, 0o700]))),
        max_size=3),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return init_repo(tmp_path_factory.mktemp("diffrepo") / "repo")


def store(repo: Any, writer: Any, tree: dict) -> str:
    nodes = []
    for name, (kind, value, mode) in tree.items():
        node: dict[str, Any] = {"name": name, "type": kind, "mode": mode}
        if kind == "file":
            blob_id = repo.blob_id(value)
            writer.add(blob_id, value)
            node.update(content=[blob_id.hex()] if value else [], size=len(value))
        elif kind == "symlink":
            node["target"] = value
        else:
            node["subtree"] = store(repo, writer, value)
        nodes.append(node)
    data = encode_tree(nodes)
    tree_id = repo.blob_id(data)
    writer.add(tree_id, data, kind="tree")
    return tree_id.hex()


def flatten(tree: dict, prefix: str = "") -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for name, (kind, value, mode) in tree.items():
        path = f"{prefix}/{name}"
        out[path] = (kind, None if kind == "dir" else value, mode)
        if kind == "dir":
            out.update(flatten(value, path))
    return out


def expected(old: dict, new: dict, metadata: bool) -> tuple[set, int, int]:
    a, b = flatten(old), flatten(new)
    changes = set()
    old_data, new_data = set(), set()
    for path in a.keys() | b.keys():
        x, y = a.get(path), b.get(path)
        if y is None:
            changes.add(("-", path))
        elif x is None:
            changes.add(("+", path))
        elif x[0] != y[0]:
            changes.add(("T", path))
        elif x[1] != y[1]:
            changes.add(("M", path))
        elif metadata and x[2] != y[2]:
            changes.add(("U", path))
            continue
        else:
            continue
        if x is not None and x[0] == "file" and x[1]:
            old_data.add(x[1])
        if y is not None and y[0] == "file" and y[1]:
            new_data.add(y[1])
    return changes, sum(map(len, new_data - old_data)), sum(map(len, old_data - new_data))


@settings(max_examples=150, deadline=None)
@given(old=trees, new=trees, metadata=st.booleans())
def test_diff_matches_a_plain_comparison(repo, old: dict, new: dict, metadata: bool) -> None:
    with repo.writer() as writer:
        old_id, new_id = store(repo, writer, old), store(repo, writer, new)
    differ = Differ(repo, metadata=metadata)
    got = {(c.kind, c.path) for c in differ.changes(old_id, new_id)}
    changes, added, removed = expected(old, new, metadata)
    assert got == changes
    assert (differ.stats.bytes_added, differ.stats.bytes_removed) == (added, removed)
    # the other way round: the mirror image
    back = Differ(repo, metadata=metadata)
    mirror = {"+": "-", "-": "+"}
    assert {(mirror.get(c.kind, c.kind), c.path) for c in back.changes(new_id, old_id)} == changes
