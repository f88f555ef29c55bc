"""What a directory held at the previous backup: from the files cache or the parent snapshot's trees."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cbr_agent.backup.filescache import RecordNodes
from cbr_agent.errors import RepositoryError
from cbr_agent.fs.nodes import Node
from cbr_agent.repository import decode_tree
from cbr_agent.repository.tree import AnyNode

log = logging.getLogger(__name__)

#: a file whose ctime is this close to the moment it was looked at may change again unnoticed
#: (same timestamp tick); such entries are never trusted from the cache
RACY_NS = 100_000_000


@dataclass
class Prev:
    """What a directory held before: nodes by name and when that listing was taken."""

    nodes: Mapping[str, Node]
    scan_ns: int


def kept_nodes(prev: Prev) -> Mapping[str, AnyNode]:
    """The previous nodes by name as a new tree takes the unchanged ones: as their tree's bytes where the
    files cache kept them (neither decoded nor encoded again), else decoded."""
    nodes = prev.nodes
    return nodes.encoded_all() if isinstance(nodes, RecordNodes) else nodes


def kept(prev: Prev, name: str, node: Node) -> AnyNode:
    """One unchanged entry's node for the new tree (see :func:`kept_nodes`)."""
    nodes = prev.nodes
    if isinstance(nodes, RecordNodes):
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
