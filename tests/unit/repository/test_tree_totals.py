"""A directory node's totals: read only when they are three counts, summed only when every subdirectory
has them (trees of older versions have none)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.repository.tree import TOTALS, Totals, decode_tree, encode_tree, totals_of, tree_totals

SUB = "ab" * 32


def dir_node(name: str, totals: Totals | None) -> dict:
    node = {"name": name, "type": "dir", "subtree": SUB}
    if totals is not None:
        node[TOTALS] = totals.as_node_value()
    return node


def test_totals_survive_the_tree_format() -> None:
    nodes = [dir_node("d", Totals(3, 4096, 2)), {"name": "f", "type": "file", "size": 10, "content": []}]
    (back, _) = sorted(decode_tree(encode_tree(nodes)), key=lambda n: n["name"])
    assert totals_of(back) == Totals(3, 4096, 2)


def test_a_directory_counts_itself_its_files_and_what_its_subdirectories_hold() -> None:
    nodes = [
        {"name": "a", "type": "file", "size": 5},
        {"name": "b", "type": "file", "size": 7},
        {"name": "l", "type": "symlink", "target": "a"},
        dir_node("d", Totals(10, 1000, 3)),
        dir_node("mnt", Totals(0, 0, 0)),
    ]
    assert tree_totals(nodes) == Totals(12, 1012, 4)
    assert tree_totals([]) == Totals(0, 0, 1)


def test_unknown_totals_below_make_the_directory_unknown() -> None:
    assert tree_totals([{"name": "a", "type": "file", "size": 5}, dir_node("old", None)]) is None


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers()),
                 st.dictionaries(st.sampled_from(["files", "bytes", "dirs", "x"]),
                                 st.one_of(st.integers(-3, 3), st.booleans(), st.floats(), st.text()))))
def test_anything_but_three_counts_is_no_totals(value) -> None:
    got = totals_of({"name": "d", "type": "dir", TOTALS: value})
    valid = isinstance(value, dict) and all(
        type(value.get(k)) is int and value[k] >= 0 for k in ("files", "bytes", "dirs"))
    assert (got is not None) == valid
    if got is not None:
        assert got == Totals(value["files"], value["bytes"], value["dirs"])
