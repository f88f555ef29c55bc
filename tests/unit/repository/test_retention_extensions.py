"""forget's extended policy: hourly, yearly, within, tags, group-by; properties over random histories."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.repository.retention import Policy, group_key, select, select_with_reasons
from cbr_agent.timespec import Duration
from tests.unit.repository.snap_history import BASE, Snap

snap_lists = st.lists(
    st.tuples(st.floats(min_value=0, max_value=3000, allow_nan=False),  # hours ago... up to ~4 months
              st.sampled_from(["h1", "h2"]),
              st.lists(st.sampled_from(["a", "b", "c"]), max_size=2, unique=True)),
    max_size=40,
).map(lambda items: [Snap(BASE - timedelta(hours=h * 24 if i % 3 == 0 else h), host=host, tags=tags,
                          id=f"s{i:03d}") for i, (h, host, tags) in enumerate(items)])


def local(t: datetime) -> datetime:
    return t.astimezone()


@settings(max_examples=200, deadline=None)
@given(snaps=snap_lists, hourly=st.integers(0, 4), yearly=st.integers(0, 3),
       within_days=st.integers(0, 60), tag=st.sampled_from([None, "a", "b"]),
       group=st.sampled_from(["host,paths", "", "host,tags", "tags"]))
def test_partition_reasons_and_bounds(snaps, hourly, yearly, within_days, tag, group) -> None:
    within = Duration(days=within_days) if within_days else None
    tags = (frozenset([tag]),) if tag else ()
    policy = Policy(hourly=hourly, yearly=yearly, within=within, tags=tags)
    group_by = tuple(g for g in group.split(",") if g)
    keep, forget, reasons = select_with_reasons(snaps, policy, group_by)
    assert sorted(s.id for s in keep + forget) == sorted(s.id for s in snaps)
    assert all(reasons.get(id(s)) for s in keep) and not any(id(s) in reasons for s in forget)
    groups: dict = {}
    for s in snaps:
        groups.setdefault(group_key(s, group_by), []).append(s)
    for members in groups.values():
        kept = [s for s in members if s in keep]
        newest = max(local(s.time) for s in members)
        # hourly/yearly keep at most N per group, each the newest of its hour/year
        for name, n, bucket in (("hourly", hourly, lambda t: (t.date(), t.hour)),
                                ("yearly", yearly, lambda t: t.year)):
            by_rule = [s for s in kept if name in reasons[id(s)]]
            assert len(by_rule) <= n
            for s in by_rule:
                assert local(s.time) == max(local(m.time) for m in members
                                            if bucket(local(m.time)) == bucket(local(s.time)))
        # within: exactly the snapshots younger than the duration before the group's newest
        if within:
            cutoff = newest - timedelta(days=within_days)
            by_within = {s.id for s in kept if any(r.startswith("within") for r in reasons[id(s)])}
            assert by_within == {s.id for s in members if local(s.time) > cutoff}
        # keep-tag: every snapshot holding the tag
        if tag:
            assert all(s in keep for s in members if tag in s.tags)


def test_keep_within_counts_from_the_newest_snapshot_not_from_now() -> None:
    snaps = [Snap(BASE - timedelta(days=d), id=f"s{d}") for d in (400, 401, 402, 500)]
    keep, forget = select(snaps, Policy(within=Duration(days=3)))
    assert {s.id for s in keep} == {"s400", "s401", "s402"} and [s.id for s in forget] == ["s500"]


def test_keep_yearly_and_hourly_examples() -> None:
    snaps = [Snap(datetime(y, 6, 1, tzinfo=timezone.utc), id=f"y{y}") for y in (2022, 2023, 2024)]
    snaps += [Snap(datetime(2024, 12, 1, tzinfo=timezone.utc), id="y2024-dec")]
    keep, _ = select(snaps, Policy(yearly=2))
    assert {s.id for s in keep} == {"y2024-dec", "y2023"}
    hours = [Snap(BASE - timedelta(minutes=m), id=f"m{m}") for m in (0, 10, 70, 130, 135)]
    keep, _ = select(hours, Policy(hourly=2))
    assert len(keep) == 2 and "m0" in {s.id for s in keep}


def test_group_by_and_keep_tag() -> None:
    snaps = [Snap(BASE - timedelta(days=i), host=h, tags=t, id=f"{h}{i}")
             for i, (h, t) in enumerate([("x", []), ("y", ["keep"]), ("x", ["keep"]), ("y", [])])]
    keep, _ = select(snaps, Policy(last=1), ("host",))
    assert {s.id for s in keep} == {"x0", "y1"}
    keep, _ = select(snaps, Policy(last=1), ())
    assert {s.id for s in keep} == {"x0"}
    keep, _ = select(snaps, Policy(tags=(frozenset(["keep"]),)))
    assert {s.id for s in keep} == {"y1", "x2"}
    with pytest.raises(ValueError):
        select(snaps, Policy(last=1), ("color",))
