"""Which snapshots a ``forget --keep-*`` policy keeps (restic's rules).

Snapshots are grouped (by default by host and path set; ``group_by`` any of host, paths, tags); within
a group, newest first: ``last`` keeps the N newest; ``hourly`` keeps the newest snapshot of each of the N
most recent hours that have one; daily, weekly (ISO weeks), monthly and yearly alike; ``within`` keeps
every snapshot younger than the duration, counted back from the group's newest snapshot (not from now,
so a host that stopped backing up keeps its last ones); ``tags`` keeps every snapshot that holds all
the tags of any of the sets. A snapshot kept by any rule is kept. Buckets use local time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

from cbr_agent.timespec import Duration

GROUP_FIELDS = ("host", "paths", "tags")


class Retained(Protocol):
    """What the rules read of a snapshot (:class:`cbr_agent.repository.Snapshot` has it all)."""

    @property
    def time(self) -> datetime: ...

    @property
    def host(self) -> str: ...

    @property
    def paths(self) -> Sequence[str]: ...

    @property
    def tags(self) -> Sequence[str]: ...

    @property
    def id(self) -> str | None: ...


S = TypeVar("S", bound=Retained)


@dataclass(frozen=True)
class Policy:
    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    hourly: int = 0
    yearly: int = 0
    within: Duration | None = None
    tags: tuple[frozenset[str], ...] = ()

    def empty(self) -> bool:
        return not (self.last or self.hourly or self.daily or self.weekly or self.monthly or self.yearly
                    or self.within or self.tags)

    def counts(self) -> dict[str, int]:
        return {"last": self.last, "hourly": self.hourly, "daily": self.daily, "weekly": self.weekly,
                "monthly": self.monthly, "yearly": self.yearly}


def _local(t: datetime) -> datetime:
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).astimezone()


def _buckets(policy: Policy) -> list[tuple[str, int, Callable[[datetime], Any]]]:
    return [
        ("hourly", policy.hourly, lambda t: (t.year, t.month, t.day, t.hour)),
        ("daily", policy.daily, lambda t: (t.year, t.month, t.day)),
        ("weekly", policy.weekly, lambda t: t.isocalendar()[:2]),
        ("monthly", policy.monthly, lambda t: (t.year, t.month)),
        ("yearly", policy.yearly, lambda t: t.year),
    ]


def group_key(snap: Retained, group_by: Sequence[str]) -> tuple[Any, ...]:
    key: list[Any] = []
    for part in group_by:
        if part == "host":
            key.append(snap.host)
        elif part == "paths":
            key.append(tuple(sorted(snap.paths)))
        elif part == "tags":
            key.append(tuple(sorted(set(snap.tags or ()))))
        else:
            raise ValueError(f"cannot group by {part!r}: use host, paths and/or tags")
    return tuple(key)


def select_with_reasons(snapshots: Sequence[S], policy: Policy,
                        group_by: Sequence[str] = ("host", "paths")
                        ) -> tuple[list[S], list[S], dict[int, list[str]]]:
    """``(keep, forget, reasons)``: each list oldest first; ``reasons[id(snap)]`` says which rules kept a
    snapshot (``last``, ``daily`` ..., ``within 7d``, ``tag a,b``)."""
    groups: dict[tuple[Any, ...], list[S]] = {}
    for snap in snapshots:
        groups.setdefault(group_key(snap, group_by), []).append(snap)
    reasons: dict[int, list[str]] = {}

    def keep(snap: S, why: str) -> None:
        reasons.setdefault(id(snap), []).append(why)

    for group in groups.values():
        newest_first = sorted(group, key=lambda s: (_local(s.time), s.id or ""), reverse=True)
        for snap in newest_first[: policy.last]:
            keep(snap, "last")
        for name, count, bucket_of in _buckets(policy):
            seen: set[Any] = set()
            for snap in newest_first:
                if len(seen) >= count:
                    break
                bucket = bucket_of(_local(snap.time))
                if bucket not in seen:
                    seen.add(bucket)
                    keep(snap, name)
        if policy.within and newest_first:
            cutoff = policy.within.before(_local(newest_first[0].time))
            for snap in newest_first:
                if _local(snap.time) > cutoff:
                    keep(snap, f"within {policy.within}")
        for tag_set in policy.tags:
            for snap in newest_first:
                if tag_set <= set(snap.tags or ()):
                    keep(snap, "tag " + ",".join(sorted(tag_set)))
    ordered = sorted(snapshots, key=lambda s: (_local(s.time), s.id or ""))
    kept = [s for s in ordered if id(s) in reasons]
    forgotten = [s for s in ordered if id(s) not in reasons]
    return kept, forgotten, reasons


def select(snapshots: Sequence[S], policy: Policy,
           group_by: Sequence[str] = ("host", "paths")) -> tuple[list[S], list[S]]:
    """``(keep, forget)``, each oldest first."""
    kept, forgotten, _reasons = select_with_reasons(snapshots, policy, group_by)
    return kept, forgotten
