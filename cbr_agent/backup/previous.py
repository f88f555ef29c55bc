"""What a directory held at the previous backup: from the files cache or the parent snapshot's trees."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cbr_agent.backup.filescache import RecordNodes
from cbr_agent.errors import RepositoryError
from cbr_agent.fs.nodes import Node
from cbr_agent.repository import decode_tree
from cbr_agent.repository.tree import AnyNode, EncodedListing, EncodedNode, encode_listing

log = logging.getLogger(__name__)

#: a file whose ctime is this close to the moment it was looked at may change again unnoticed
#: (same timestamp tick); such entries are never trusted from the cache
RACY_NS = 100_000_000


@dataclass
class Prev:
    """What a directory held before: nodes by name and when that listing was taken."""

    nodes: Mapping[str, Node]
    scan_ns: int


class ListingNodes(Mapping[str, Node]):
    """A directory's previous nodes as one encoded listing (columns in name order), looked up by bisection:
    no object is made for an entry that is not asked for. A directory where the journal named the few
    entries that changed takes the rest as these columns (:meth:`TreeAssembler.add_listing`)."""

    def __init__(self, listing: EncodedListing) -> None:
        self.listing = listing
        self._by_name: dict[str, EncodedNode] | None = None

    def index(self, name: str) -> int | None:
        names = self.listing.names
        i = bisect.bisect_left(names, name)
        return i if i < len(names) and names[i] == name else None

    def encoded(self, name: str) -> EncodedNode | None:
        i = self.index(name)
        return None if i is None else self.listing.node_at(i)

    def encoded_all(self) -> dict[str, EncodedNode]:
        """Every node by name (made once, for a directory that is listed after all)."""
        if self._by_name is None:
            self._by_name = dict(zip(self.listing.names, self.listing.nodes(), strict=True))
        return self._by_name

    def get(self, name: str, default: Any = None) -> Any:
        node = self.encoded(name)
        return default if node is None else node.decode()

    def __getitem__(self, name: str) -> Node:
        node = self.get(name)
        if node is None:
            raise KeyError(name)
        return node

    def __iter__(self) -> Iterator[str]:
        return iter(self.listing.names)

    def __len__(self) -> int:
        return len(self.listing.names)


def prev_listing(prev: Prev) -> ListingNodes:
    """``prev``'s nodes as a listing: a files cache row's columns as they are, a parent tree's encoded."""
    nodes = prev.nodes
    if isinstance(nodes, ListingNodes):
        return nodes
    if isinstance(nodes, RecordNodes):
        return ListingNodes(encode_listing(list(nodes.encoded_all().values())))
    return ListingNodes(encode_listing(list(nodes.values())))


def kept_nodes(prev: Prev) -> Mapping[str, AnyNode]:
    """The previous nodes by name as a new tree takes the unchanged ones: as their tree's bytes where the
    files cache kept them (neither decoded nor encoded again), else decoded."""
    nodes = prev.nodes
    return nodes.encoded_all() if isinstance(nodes, (RecordNodes, ListingNodes)) else nodes


def kept(prev: Prev, name: str, node: Node) -> AnyNode:
    """One unchanged entry's node for the new tree (see :func:`kept_nodes`)."""
    nodes = prev.nodes
    if isinstance(nodes, (RecordNodes, ListingNodes)):
        return nodes.encoded(name) or node
    return node


def prev_of_subtree(repo: Any, subtree: str | None, scan_ns: int) -> Prev | None:
    if not subtree:
        return None
    try:
        nodes = decode_tree(repo.load_blob(bytes.fromhex(subtree)))
    except (RepositoryError, ValueError) as exc:
        log.warning("cannot read the parent snapshot's tree %s (%s); reading files again", subtree, exc)
        return None
    return Prev({n["name"]: n for n in nodes}, scan_ns)


def prev_of_node(repo: Any, node: Node | None, prev: Prev | None) -> Prev | None:
    if node is None or prev is None or node.get("type") != "dir":
        return None
    return prev_of_subtree(repo, node.get("subtree"), prev.scan_ns)


class LazyPrev:
    """The previous listing of a subdirectory, read from the parent tree only if needed (the
    subdirectory's own files cache row wins; the parent tree is only read when there is none)."""

    def __init__(self, repo: Any, node: Node | None, prev: Prev | None) -> None:
        self.repo, self.node, self.prev = repo, node, prev
        self.value: Prev | None = None
        self.loaded = False

    def get(self) -> Prev | None:
        if not self.loaded:
            self.value = prev_of_node(self.repo, self.node, self.prev)
            self.loaded = True
        return self.value


def materialize(prev: Prev | LazyPrev | None) -> Prev | None:
    if isinstance(prev, LazyPrev):
        return prev.get()
    return prev
