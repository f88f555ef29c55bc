"""Which snapshots a ``forget --keep-*`` policy keeps (restic's rules, per host and path set).

Snapshots are grouped by host and paths; within a group, newest first: ``keep_last`` keeps the N
newest; ``keep_daily`` keeps the newest snapshot of each of the N most recent days that have one;
weekly (ISO weeks) and monthly alike. A snapshot kept by any rule is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class Policy:
    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    def empty(self) -> bool:
        return not (self.last or self.daily or self.weekly or self.monthly)


def _local(t: datetime) -> datetime:
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone()


def _buckets(policy: Policy) -> list[tuple[int, Callable[[datetime], Any]]]:
    return [
        (policy.daily, lambda t: (t.year, t.month, t.day)),
        (policy.weekly, lambda t: t.isocalendar()[:2]),
        (policy.monthly, lambda t: (t.year, t.month)),
    ]


def select(snapshots: Sequence[Any], policy: Policy) -> tuple[list[Any], list[Any]]:
    """``(keep, forget)``, each oldest first."""
    groups: dict[tuple[str, tuple[str, ...]], list[Any]] = {}
    for snap in snapshots:
        groups.setdefault((snap.host, tuple(sorted(snap.paths))), []).append(snap)
    keep_ids: set[int] = set()
    for group in groups.values():
        newest_first = sorted(group, key=lambda s: (_local(s.time), s.id or ""), reverse=True)
        for snap in newest_first[: policy.last]:
            keep_ids.add(id(snap))
        for count, bucket_of in _buckets(policy):
            seen: set[Any] = set()
            for snap in newest_first:
                if len(seen) >= count:
                    break
                bucket = bucket_of(_local(snap.time))
                if bucket not in seen:
                    seen.add(bucket)
                    keep_ids.add(id(snap))
    ordered = sorted(snapshots, key=lambda s: (_local(s.time), s.id or ""))
    keep = [s for s in ordered if id(s) in keep_ids]
    forget = [s for s in ordered if id(s) not in keep_ids]
    return keep, forget
