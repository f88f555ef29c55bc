"""What changed since the parent snapshot, as a filesystem-event journal saw it: a hint to the walker.

The engine knows nothing of who keeps the journal (the daemon does, in agent/journal.py); it takes any
object with this shape. A hint is only ever a hint: it is used only when the parent snapshot is the one
it counts from (:attr:`ChangeHint.base_snapshot`), and a subtree it cannot vouch for is walked fully.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Protocol

#: what the hint says of one directory
CLEAN = 0      # nothing at or below it changed: reuse the previous subtree as it is
BELOW = 1      # its own entries did not change, something below it did: rebuild from the previous listing
DIRTY = 2      # its entries (or a file in it) changed: list and stat it
DEGRADED = 3   # the journal lost track below it: walk the subtree fully


class ChangeHint(Protocol):
    base_snapshot: str | None   # the snapshot the changes count from
    #: :meth:`changed_names` names the entries that came or went as well: a dirty directory is then not
    #: listed, only its named entries are looked at (the daemon's journal names every entry an event
    #: was about; a hint that only knows which files changed leaves this false)
    names_complete: bool

    def full(self, root: str) -> bool:
        """Whether backup path ``root`` must be walked without the hint."""
        ...

    def state(self, path: str) -> int:
        """CLEAN, BELOW, DIRTY or DEGRADED for the directory ``path`` (absolute, normalized)."""
        ...

    def changed_names(self, path: str) -> frozenset[str] | None:
        """For a DIRTY directory: the names of its entries whose content or metadata changed (and of
        those that came or went, if :attr:`names_complete`; else they are found by listing it); None
        when that is not known, and every entry is compared as in a full scan."""
        ...


def _ancestors(path: str) -> Iterable[str]:
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return
        yield parent
        path = parent


class DirtyDirs:
    """A frozen set of changed directories (with, where known, which of their entries changed), subtrees
    to walk fully and backup paths to walk fully."""

    def __init__(self, base_snapshot: str | None, *, dirty: Iterable[str] = (),
                 degraded: Iterable[str] = (), full_roots: Iterable[str] = (),
                 names: Mapping[str, Iterable[str]] | None = None, names_complete: bool = False) -> None:
        self.base_snapshot = base_snapshot
        self.names_complete = names_complete
        self.dirty = frozenset(dirty)
        #: only for dirty directories: one missing from it has every entry compared
        self.names = {path: frozenset(changed) for path, changed in (names or {}).items()
                      if path in self.dirty}
        self.degraded = frozenset(degraded)
        self.full_roots = frozenset(full_roots)
        below: set[str] = set()
        for path in self.dirty | self.degraded:
            for parent in _ancestors(path):
                if parent in below:
                    break  # its ancestors are in already
                below.add(parent)
        self.below = frozenset(below)

    def full(self, root: str) -> bool:
        return root in self.full_roots or any(a in self.degraded for a in (root, *_ancestors(root)))

    def state(self, path: str) -> int:
        if path in self.degraded:
            return DEGRADED
        if path in self.dirty:
            return DIRTY
        if path in self.below:
            return BELOW
        return CLEAN

    def changed_names(self, path: str) -> frozenset[str] | None:
        return self.names.get(path)


class _FullRoots:
    """A hint with more backup paths to walk fully (their excludes changed since the parent)."""

    def __init__(self, hint: ChangeHint, roots: Iterable[str]) -> None:
        self.base_snapshot = hint.base_snapshot
        self.names_complete = hint.names_complete
        self._hint = hint
        self._roots = frozenset(roots)

    def full(self, root: str) -> bool:
        return root in self._roots or self._hint.full(root)

    def state(self, path: str) -> int:
        return self._hint.state(path)

    def changed_names(self, path: str) -> frozenset[str] | None:
        return self._hint.changed_names(path)


def usable_hint(hint: ChangeHint | None, parent_id: str | None,
                roots: Iterable[tuple[str, tuple[str, ...]]],
                parent_excludes: dict[str, list[str]]) -> ChangeHint | None:
    """The hint if it counts from ``parent_id``, with the paths whose excludes changed walked fully."""
    if hint is None or parent_id is None or hint.base_snapshot != parent_id:
        return None
    changed = [path for path, excludes in roots if tuple(parent_excludes.get(path, ())) != tuple(excludes)]
    return _FullRoots(hint, changed) if changed else hint
