"""Nodes kept as their tree's bytes: a tree made of encoded and decoded nodes in any mix is byte for byte
the canonical JSON of the decoded listing (so an unchanged directory still dedups to the same blob), and
each encoded node decodes to the node it was made from."""

from __future__ import annotations

import bisect
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.repository.tree import (
    EncodedNode,
    canonical_json,
    decode_tree,
    encode_listing,
    encode_tree,
    listing_totals,
    node_name,
    split_array,
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
@given(nodes=NODES, encoded=st.lists(st.booleans(), min_size=12, max_size=12), block=st.integers(1, 5))
def test_a_tree_of_encoded_and_decoded_nodes_is_the_canonical_json_of_the_listing(nodes, encoded,
                                                                                   block) -> None:
    from cbr_agent.repository import tree

    mixed = [EncodedNode.of(n) if e else n for n, e in zip(nodes, encoded, strict=False)]
    ordered = sorted(nodes, key=lambda n: n["name"])
    expected = canonical_json({"v": 1, "nodes": ordered})
    assert encode_tree(mixed) == expected
    old, tree._BLOCK = tree._BLOCK, block  # decoded nodes are encoded a block at a time
    try:
        # mixed out of order and in order (a listing's: nothing to sort), and decoded only
        for given_nodes in (list(reversed(mixed)), sorted(mixed, key=node_name), list(nodes)):
            listing = encode_listing(given_nodes)
            assert tree_of(listing) == expected
            assert [node_name(n) for n in given_nodes] == listing.names == [n["name"] for n in ordered]
            assert listing.sizes == [n["size"] if n["type"] == "file" else 0 for n in ordered]
            assert listing.blobs == [n["content"][0] if n["type"] == "file" else "" for n in ordered]
            assert listing_totals(listing, given_nodes) == tree_totals(nodes)
            assert listing.datas == [EncodedNode.of(n).data for n in ordered]
    finally:
        tree._BLOCK = old
    assert decode_tree(expected) == ordered
    assert tree_totals(mixed) == tree_totals(nodes)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.sampled_from('},{"ab\\'), min_size=1, max_size=8), min_size=1, max_size=6,
                unique=True))
def test_an_array_of_nodes_splits_into_each_nodes_bytes(names) -> None:
    """``},{"`` occurs only between two nodes (a quote in a name or link target is escaped), unless a
    node holds a list of objects: then the count tells, and the array is decoded and each node encoded
    on its own."""
    nodes = [{"name": name, "type": "symlink", "target": name[::-1]} for name in names]
    assert split_array(canonical_json(nodes), len(nodes)) == [EncodedNode.of(n).data for n in nodes]
    nodes[0]["extra"] = [{"k": 1}, {"k": 2}]
    assert split_array(canonical_json(nodes), len(nodes)) == [EncodedNode.of(n).data for n in nodes]


@settings(max_examples=300, deadline=None)
@given(nodes=NODES)
def test_an_encoded_node_decodes_to_the_node_and_carries_its_fields(nodes) -> None:
    for node in nodes:
        enc = EncodedNode.of(node)
        assert enc.decode() == json.loads(json.dumps(node))
        assert (enc.name, enc.type, enc.inode) == (node["name"], node["type"], node["inode"])
        assert enc.size == (node["size"] if node["type"] == "file" else 0)
        assert enc.blobs == "".join(node.get("content") or ())


def test_two_nodes_of_one_name_are_refused_encoded_or_not() -> None:
    a = {"name": "x", "type": "file", "size": 1}
    with pytest.raises(ValueError, match="duplicate name"):
        encode_tree([a, EncodedNode.of(dict(a, size=2))])


def test_an_integer_beyond_64_bits_is_encoded_by_the_standard_library_the_same_way() -> None:
    nodes = [{"name": "big", "type": "file", "size": 1, "mtime_ns": 2**70}, {"name": "small", "type": "fifo"}]
    expected = json.dumps({"nodes": nodes, "v": 1}, sort_keys=True, separators=(",", ":")).encode()
    assert encode_tree([EncodedNode.of(nodes[0]), nodes[1]]) == expected == encode_tree(nodes)


EDITS = st.lists(st.tuples(st.sampled_from(["put", "insert", "delete"]), st.integers(0, 20), NODES),
                 max_size=6)


@settings(max_examples=300, deadline=None)
@given(nodes=NODES, edits=EDITS)
def test_a_listing_edited_in_place_is_the_listing_of_the_edited_nodes(nodes, edits) -> None:
    """A directory where a few entries changed takes its previous listing and edits it column by column:
    the result is the listing (and the tree, and the totals) of the nodes after the same changes."""
    by_name = {n["name"]: n for n in nodes}
    listing = encode_listing(list(nodes)).copy()
    before = listing.copy()
    for op, at, others in edits:
        names = listing.names
        if op == "delete" and names:
            i = at % len(names)
            del by_name[names[i]]
            listing.delete(i)
        elif op == "put" and names:
            i = at % len(names)
            node = {**(others[0] if others else by_name[names[i]]), "name": names[i]}
            by_name[names[i]] = node
            listing.put(i, EncodedNode.of(node))
        elif op == "insert" and others and others[0]["name"] not in by_name:
            node = others[0]
            by_name[node["name"]] = node
            listing.insert(bisect.bisect_left(names, node["name"]), EncodedNode.of(node))
    expected = encode_listing(list(by_name.values()))
    assert listing == expected
    assert tree_of(listing) == encode_tree(list(by_name.values()))
    assert listing_totals(listing) == tree_totals(list(by_name.values()))
    assert [listing.node_at(i) for i in range(len(listing.names))] == [
        EncodedNode.of(n) for n in sorted(by_name.values(), key=lambda n: n["name"])]
    if edits:  # a copy is its own: the listing it was made from is as it was
        assert before == encode_listing(list(nodes))
