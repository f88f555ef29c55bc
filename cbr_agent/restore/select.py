"""Which entries of a snapshot a restore takes: ``--path`` subtrees, ``--include`` and ``--exclude``
patterns (the exclude grammar, as ``find`` reads it: a name at any depth, an absolute path, or a path
relative to the snapshot's backup paths).

An excluded entry is left out with everything below it. ``--include`` patterns are resolved first, by a
walk of the snapshot that skips excluded directories, into the list of matching paths; each is then
restored like a ``--path`` (with everything below it, and its parent directories).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cbr_agent.errors import UsageError
from cbr_agent.explore.find import Pattern, compile_pattern
from cbr_agent.pathrules import PathRuleError
from cbr_agent.repository.walk import walk

Excluded = Callable[[str, str], bool]


def compile_patterns(patterns: Sequence[str], option: str) -> list[Pattern]:
    try:
        return [compile_pattern(p) for p in patterns]
    except PathRuleError as exc:
        raise UsageError(f"{option}: {str(exc).replace('exclude ', '', 1)}") from None


def exclude_predicate(patterns: Sequence[Pattern], roots: Sequence[str]) -> Excluded | None:
    """``excluded(path, name)`` for the patterns, or None when there are none."""
    if not patterns:
        return None
    roots = [os.path.normpath(r) for r in roots]
    return lambda path, name: any(p.matches(path, name, roots) for p in patterns)


def normal_paths(paths: Sequence[str]) -> list[str]:
    return [os.path.normpath("/" + p.strip("/")) if p not in ("", "/") else "/" for p in paths] or ["/"]


class Selection:
    """The ``--path`` subtrees (or include matches) to restore and the exclude predicate: answers, for
    an entry, whether it is restored and whether the walk must go through it."""

    def __init__(self, paths: Sequence[str], excluded: Excluded | None = None) -> None:
        self.paths = set(normal_paths(paths))
        self.everything = "/" in self.paths
        self.excluded = excluded
        self._through: set[str] = set()  # proper ancestors of the paths
        for p in self.paths:
            while p not in ("/", ""):
                p = p.rsplit("/", 1)[0] or "/"
                self._through.add(p)

    def wanted(self, path: str) -> bool:
        """``path`` is one of the paths or below one."""
        if self.everything:
            return True
        while path:
            if path in self.paths:
                return True
            path = path.rsplit("/", 1)[0]
        return False

    def visit(self, path: str, name: str) -> tuple[bool, bool]:
        """``(restore it, walk into it)`` for an entry at ``path``."""
        if self.excluded is not None and self.excluded(path, name):
            return False, False
        wanted = self.wanted(path)
        return wanted, wanted or path in self._through


def include_matches(repo: Any, tree: str, roots: Sequence[str], include: Sequence[Pattern],
                    paths: Sequence[str] = ("/",), excluded: Excluded | None = None) -> list[str]:
    """The paths (inside the ``paths`` subtrees) that match an include pattern, not below an excluded
    directory; a matching directory stands for everything below it."""
    scope = Selection(paths, excluded)
    roots = [os.path.normpath(r) for r in roots]

    def choose(path: str, node: dict[str, Any]) -> tuple[bool, bool]:
        take, walk_in = scope.visit(path, node["name"])
        if take and any(p.matches(path, node["name"], roots) for p in include):
            return True, False  # a match stands for everything below it
        return False, walk_in

    return [path for path, _node in walk(repo, tree, choose=choose)]


def selected_files(repo: Any, tree: str, selection: Selection) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(path, node)`` of every regular file the selection restores."""

    def choose(path: str, node: dict[str, Any]) -> tuple[bool, bool]:
        take, walk_in = selection.visit(path, node["name"])
        return take and node.get("type") == "file", walk_in

    yield from walk(repo, tree, choose=choose)
