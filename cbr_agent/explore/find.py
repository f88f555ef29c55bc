"""find: which snapshots hold entries matching a pattern.

A pattern uses the exclude grammar (:mod:`cbr_agent.pathrules`): without ``/`` it matches an entry's
name at any depth (``*.conf``, ``id_rsa``); starting with ``/`` it matches the whole path
(``/etc/**/*.conf``); any other pattern with ``/`` matches the path relative to one of the snapshot's
backup paths (``.ssh/*``, ``**/node_modules``), as an exclude of that path would.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cbr_agent.pathrules import PathRuleError, glob_match, normalize_glob
from cbr_agent.repository.walk import Node, load_tree


@dataclass(frozen=True)
class Pattern:
    text: str  # as given
    kind: str  # "name", "absolute" or "relative"
    glob: str  # normalized

    def matches(self, path: str, name: str, roots: Sequence[str]) -> bool:
        if self.kind == "name":
            return glob_match(self.glob, name)
        if self.kind == "absolute":
            return glob_match(self.glob, path)
        for root in roots:
            prefix = "/" if root == "/" else root + "/"
            if path.startswith(prefix) and glob_match(self.glob, path[len(prefix):]):
                return True
        return False


def compile_pattern(text: str) -> Pattern:
    """A find pattern in normal form; PathRuleError (naming it) when it is unusable."""
    if not text or "\x00" in text:
        raise PathRuleError(f"find pattern {text!r} is empty or holds a NUL byte")
    if text.startswith("/"):
        glob = "/" + "/".join(s for s in text.split("/") if s not in ("", "."))
        if ".." in glob.split("/"):
            raise PathRuleError(f"find pattern {text!r} contains '..', which never matches")
        normalize_glob(glob.lstrip("/").replace(",", "_") or "x")  # validates the glob syntax
        return Pattern(text, "absolute", glob)
    # a comma is fine here (excludes refuse it only because the CBR API joins them with commas)
    normal = normalize_glob(text.replace(",", "\x01")).replace("\x01", ",")
    if normal.startswith("./") or "/" in normal:
        return Pattern(text, "relative", normal.removeprefix("./"))
    return Pattern(text, "name", normal)


@dataclass
class FindFilter:
    patterns: list[Pattern]
    newest: datetime | None = None  # entries modified at or before this time
    oldest: datetime | None = None  # entries modified at or after this time

    def __post_init__(self) -> None:
        self._newest_ns = None if self.newest is None else int(self.newest.timestamp() * 1e9)
        self._oldest_ns = None if self.oldest is None else int(self.oldest.timestamp() * 1e9)

    def matches(self, path: str, node: Node, roots: Sequence[str]) -> bool:
        name = node["name"]
        if not any(p.matches(path, name, roots) for p in self.patterns):
            return False
        mtime = int(node.get("mtime_ns", 0))
        if self._newest_ns is not None and mtime > self._newest_ns:
            return False
        return self._oldest_ns is None or mtime >= self._oldest_ns


@dataclass
class SnapshotMatches:
    snapshot: Any
    matches: list[tuple[str, Node]]


def find_in_snapshots(repo: Any, snapshots: Iterable[Any], flt: FindFilter,
                      progress: Callable[[int, int], None] | None = None) -> Iterator[SnapshotMatches]:
    """The matches of every snapshot that has any, in the order given. Subtrees found to hold no match
    under a given path are remembered, so the unchanged directories of many snapshots are read once."""
    snaps = list(snapshots)
    # (tree id, path of the tree, backup paths) known to hold no match: relative patterns depend on
    # the snapshot's backup paths too
    barren: set[tuple[str, str, tuple[str, ...]]] = set()
    for i, snap in enumerate(snaps):
        if progress is not None:
            progress(i, len(snaps))
        roots = [posixpath.normpath(p) for p in snap.paths]
        found = _find_in_tree(repo, snap.tree, roots, flt, barren)
        if found:
            yield SnapshotMatches(snap, found)
    if progress is not None:
        progress(len(snaps), len(snaps))


def _find_in_tree(repo: Any, tree: str, roots: list[str], flt: FindFilter,
                  barren: set[tuple[str, str, tuple[str, ...]]]) -> list[tuple[str, Node]]:
    found: list[tuple[str, Node]] = []
    key = tuple(sorted(roots))
    if (tree, "", key) in barren:
        return found
    # frames: (nodes left, path of this directory, its tree id, matches found before entering it)
    stack: list[tuple[Iterator[Node], str, str, int]] = [(iter(load_tree(repo, tree, "/")), "", tree, 0)]
    while stack:
        nodes, where, tree_id, before = stack[-1]
        node = next(nodes, None)
        if node is None:
            stack.pop()
            if len(found) == before:
                barren.add((tree_id, where, key))
            continue
        path = where + "/" + node["name"]
        if flt.matches(path, node, roots):
            found.append((path, node))
        subtree = node.get("subtree")
        if node.get("type") == "dir" and subtree and (subtree, path, key) not in barren:
            stack.append((iter(load_tree(repo, subtree, path)), path, subtree, len(found)))
    return found
