"""What a directory held before, as the walker looks it up: a listing's columns answer by name like the
decoded nodes they were encoded from, whichever source they came from."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.backup.filescache import DirRecord
from cbr_agent.backup.previous import ListingNodes, Prev, kept, kept_nodes, prev_listing
from cbr_agent.repository.tree import EncodedNode, encode_listing

NAMES = st.sets(st.text(min_size=1, max_size=5), max_size=40)


def nodes_named(names) -> list[dict]:
    """Every third a directory, the others files."""
    return [{"name": n, "type": "file", "size": i, "content": ["ab" * 32]} if i % 3
            else {"name": n, "type": "dir", "subtree": "cd" * 32, "inode": i}
            for i, n in enumerate(sorted(names))]


@settings(max_examples=100, deadline=None)
@given(NAMES, st.lists(st.text(min_size=1, max_size=5), max_size=10))
def test_listing_nodes_answer_by_name_as_the_decoded_nodes(names, asked) -> None:
    nodes = nodes_named(names)
    by_name = {n["name"]: n for n in nodes}
    looked = ListingNodes(encode_listing(list(nodes)))
    for name in [*names, *asked]:
        assert looked.get(name) == by_name.get(name)
        assert looked.encoded(name) == (EncodedNode.of(by_name[name]) if name in by_name else None)
        assert (looked.index(name) is not None) == (name in by_name)
    assert list(looked) == sorted(names) and len(looked) == len(names)
    assert looked.encoded_all() == {n["name"]: EncodedNode.of(n) for n in nodes}


def test_every_kind_of_previous_listing_becomes_the_same_columns() -> None:
    """A files cache row's listing, its lazily decoded nodes and a parent tree's decoded nodes: one
    listing, so a journal-led directory is edited the same way whatever it was read from."""
    nodes = nodes_named({"a", "b", "c", "d", "e"})
    expected = encode_listing(list(nodes))
    rec = DirRecord.build(scan_ns=1, fingerprint=b"", tree="ef" * 32, nodes=nodes, blobs=b"", files=3,
                          size=0)
    row = rec.listing()
    assert row is not None
    for source in (ListingNodes(row), rec.nodes_by_name(), {n["name"]: n for n in reversed(nodes)}):
        prev = Prev(source, 5)
        assert prev_listing(prev).listing == expected
        # unchanged entries are kept as their tree's bytes
        assert kept(prev, "b", nodes[1]) == EncodedNode.of(nodes[1]) or isinstance(source, dict)
        assert {name: EncodedNode.of(node) if isinstance(node, dict) else node
                for name, node in kept_nodes(prev).items()} == {n["name"]: EncodedNode.of(n) for n in nodes}
