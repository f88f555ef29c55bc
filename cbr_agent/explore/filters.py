"""Choosing snapshots: by host, backup path and tag, and the newest one per host and path set.

As restic: several ``hosts`` match any of them; ``paths`` must all be among a snapshot's backup
paths; each entry of ``tags`` is a comma-separated set that a snapshot must hold entirely, and a
snapshot matches when it holds any of the sets (``--tag a,b --tag c``: a and b, or c). An empty
filter matches everything.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SnapshotFilter:
    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    tags: tuple[frozenset[str], ...] = field(default=())

    @classmethod
    def of(cls, hosts: Iterable[str] = (), paths: Iterable[str] = (), tags: Iterable[str] = ()
           ) -> SnapshotFilter:
        return cls(tuple(hosts), tuple(posixpath.normpath(p) for p in paths),
                   tuple(frozenset(t for t in spec.split(",") if t) for spec in tags))

    def __bool__(self) -> bool:
        return bool(self.hosts or self.paths or self.tags)

    def matches(self, snap: Any) -> bool:
        if self.hosts and snap.host not in self.hosts:
            return False
        if self.paths:
            have = {posixpath.normpath(p) for p in snap.paths}
            if not all(p in have for p in self.paths):
                return False
        if self.tags:
            have_tags = set(snap.tags)
            return any(spec <= have_tags for spec in self.tags)
        return True

    def apply(self, snapshots: Iterable[Any]) -> list[Any]:
        return [s for s in snapshots if self.matches(s)]
