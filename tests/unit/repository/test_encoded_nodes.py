"""Nodes kept as their tree's bytes: a tree made of encoded and decoded nodes in any mix is byte for byte
the canonical JSON of the decoded listing (so an unchanged directory still dedups to the same blob), and
each encoded node decodes to the node it was made from."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.repository.tree import (
    EncodedNode,
    canonical_json,
    decode_tree,
    encode_nodes,
    encode_tree,
    tree_of,
    tree_totals,
)

# names as the walker makes them: any text, lone surrogates for bytes that are not UTF-8 included
NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12) | st.builds(
    lambda s, b: s + chr(0xDC80 + b), st.text(max_size=6), st.integers(0, 127))
# what a tree can hold and read back (decode_tree reads integers beyond 64 bits as floats, as orjson does)
INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)


def _node(name: str, kind: str, size: int, extra: dict) -> dict:
    node: dict = {"name": name, "type": kind, "inode": abs(size) + 1, **extra}
    if kind == "file":
        node["size"] = abs(size)
        node["content"] = [f"{abs(size):064x}"]
    if kind == "dir":
        node["subtree"] = "ab" * 32
        node["totals"] = {"files": 1, "bytes": abs(size), "dirs": 1}
    return node


NODES = st.dictionaries(
    NAMES,
    st.tuples(st.sampled_from(["file", "dir", "symlink", "fifo"]), INTS,
              st.dictionaries(st.sampled_from(["mtime_ns", "uid", "user", "xattrs", "target"]),
                              INTS | st.text(max_size=8) | st.dictionaries(st.text(max_size=4),
                                                                            st.text(max_size=4), max_size=2),
                              max_size=3)),
    max_size=12,
).map(lambda d: [_node(name, kind, size, extra) for name, (kind, size, extra) in d.items()])


@settings(max_examples=300, deadline=None)
@given(nodes=NODES, encoded=st.lists(st.booleans(), min_size=12, max_size=12))
def test_a_tree_of_encoded_and_decoded_nodes_is_the_canonical_json_of_the_listing(nodes, encoded) -> None:
    mixed = [EncodedNode.of(n) if e else n for n, e in zip(nodes, encoded, strict=False)]
    expected = canonical_json({"v": 1, "nodes": sorted(nodes, key=lambda n: n["name"])})
    assert encode_tree(mixed) == expected
    assert tree_of(encode_nodes(reversed(mixed))) == expected
    assert decode_tree(expected) == sorted(nodes, key=lambda n: n["name"])
    assert tree_totals(mixed) == tree_totals(nodes)


@settings(max_examples=300, deadline=None)
@given(nodes=NODES)
def test_an_encoded_node_decodes_to_the_node_and_carries_its_fields(nodes) -> None:
    for node in nodes:
        enc = EncodedNode.of(node)
        assert enc.decode() == json.loads(json.dumps(node))
        assert (enc.name, enc.type, enc.inode) == (node["name"], node["type"], node["inode"])
        assert enc.size == (node["size"] if node["type"] == "file" else 0)
        assert enc.content == node.get("content")


def test_two_nodes_of_one_name_are_refused_encoded_or_not() -> None:
    a = {"name": "x", "type": "file", "size": 1}
    with pytest.raises(ValueError, match="duplicate name"):
        encode_tree([a, EncodedNode.of(dict(a, size=2))])


def test_an_integer_beyond_64_bits_is_encoded_by_the_standard_library_the_same_way() -> None:
    nodes = [{"name": "big", "type": "file", "size": 1, "mtime_ns": 2**70}, {"name": "small", "type": "fifo"}]
    expected = json.dumps({"nodes": nodes, "v": 1}, sort_keys=True, separators=(",", ":")).encode()
    assert encode_tree([EncodedNode.of(nodes[0]), nodes[1]]) == expected == encode_tree(nodes)
