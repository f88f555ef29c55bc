"""forget's retention rules: examples and properties over random snapshot histories."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.repository.retention import Policy, select
from tests.unit.repository.snap_history import BASE, Snap


def history(days: list[float], **kw) -> list[Snap]:
    return [Snap(BASE - timedelta(days=d), id=f"s{i:03d}", **kw) for i, d in enumerate(days)]


def test_keep_last_keeps_the_newest() -> None:
    snaps = history([0, 1, 2, 3])
    keep, forget = select(snaps, Policy(last=2))
    assert {s.id for s in keep} == {"s000", "s001"}
    assert {s.id for s in forget} == {"s002", "s003"}
    assert [s.time for s in keep] == sorted(s.time for s in keep)  # oldest first


def test_keep_daily_keeps_the_newest_of_each_day() -> None:
    snaps = history([0, 0.1, 1, 1.1, 5])
    keep, _ = select(snaps, Policy(daily=2))
    assert {s.id for s in keep} == {"s000", "s002"}


def test_weekly_and_monthly() -> None:
    snaps = history([0, 7, 14, 40, 80])
    keep, _ = select(snaps, Policy(weekly=2, monthly=3))
    # weeks: Mar 1 and Feb 22 (both Sundays); months: March, February (Feb 22), January (Jan 20)
    assert {s.id for s in keep} == {"s000", "s001", "s003"}


def test_groups_by_host_and_paths() -> None:
    snaps = history([0, 1]) + history([2, 3], host="other") + history([4], paths=["/x"])
    keep, forget = select(snaps, Policy(last=1))
    assert len(keep) == 3 and len(forget) == 2


@settings(max_examples=200, deadline=None)
@given(
    days=st.lists(st.floats(min_value=0, max_value=400, allow_nan=False), min_size=0, max_size=40),
    last=st.integers(0, 5), daily=st.integers(0, 5), weekly=st.integers(0, 5), monthly=st.integers(0, 5),
)
def test_properties(days: list[float], last: int, daily: int, weekly: int, monthly: int) -> None:
    snaps = history(days)
    policy = Policy(last, daily, weekly, monthly)
    keep, forget = select(snaps, policy)
    # a partition of the input
    assert sorted(s.id for s in keep + forget) == sorted(s.id for s in snaps)
    # the newest snapshot survives any non-empty policy
    if snaps and not policy.empty():
        newest = max(snaps, key=lambda s: (s.time, s.id))
        assert newest in keep
    # never more than the rules can name
    assert len(keep) <= last + daily + weekly + monthly
    if policy.empty():
        assert keep == []
