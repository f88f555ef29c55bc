"""Reading snapshot trees: one directory listing, the node at a path, and a depth-first walk.

Shared by the commands that look into snapshots without restoring them (ls, find, diff, stats, dump,
copy). A tree that cannot be read raises :class:`IntegrityError` naming the directory and the tree id.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cbr_agent.errors import IntegrityError
from cbr_agent.repository.tree import decode_tree

if TYPE_CHECKING:
    from cbr_agent.repository.repo import Repository

Node = dict[str, Any]
#: ``choose(path, node) -> (yield it, walk into it)``
Chooser = Callable[[str, Node], tuple[bool, bool]]


def load_tree(repo: Repository, tree_hex: str, where: str = "/") -> list[Node]:
    """The nodes of one tree blob, in name order."""
    try:
        return decode_tree(repo.load_blob(bytes.fromhex(tree_hex)))
    except ValueError as exc:
        raise IntegrityError(f"tree of {where} ({tree_hex}) is damaged: {exc}") from None


def normalize(path: str) -> str:
    """A path inside a snapshot in normal form: absolute, no ``.``/``..``, no trailing ``/``."""
    normal = posixpath.normpath("/" + path.strip("/")) if path not in ("", "/") else "/"
    return "/" + normal.lstrip("/")


def root_node(tree_hex: str) -> Node:
    """A directory node standing for the root of a snapshot (which has no node of its own)."""
    return {"name": "", "type": "dir", "subtree": tree_hex}


def lookup(repo: Repository, tree_hex: str, path: str) -> Node | None:
    """The node at ``path`` in the tree ``tree_hex`` (the root node for ``/``), or None."""
    node = root_node(tree_hex)
    where = ""
    for part in [p for p in normalize(path).split("/") if p]:
        if node.get("type") != "dir" or not node.get("subtree"):
            return None
        nodes = load_tree(repo, node["subtree"], where or "/")
        node = next((n for n in nodes if n["name"] == part), None)  # type: ignore[assignment]
        if node is None:
            return None
        where += "/" + part
    return node


def walk(repo: Repository, tree_hex: str, prefix: str = "",
         choose: Chooser | None = None) -> Iterator[tuple[str, Node]]:
    """``(path, node)`` of every entry below the tree, depth first, a directory before its contents,
    names in order; ``prefix`` is the tree's own path ("" for the snapshot root). ``choose`` decides,
    entry by entry, what is yielded and which directories are walked into (default: everything)."""
    stack = [(iter(load_tree(repo, tree_hex, prefix or "/")), prefix)]
    while stack:
        nodes, where = stack[-1]
        node = next(nodes, None)
        if node is None:
            stack.pop()
            continue
        path = where + "/" + node["name"]
        take, walk_in = choose(path, node) if choose is not None else (True, True)
        if take:
            yield path, node
        if walk_in and node.get("type") == "dir" and node.get("subtree"):
            stack.append((iter(load_tree(repo, node["subtree"], path)), path))
