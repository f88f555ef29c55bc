"""Durations and times for forget --keep-within and find --newest/--oldest."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.timespec import Duration, TimeSpecError, parse_duration, parse_time

counts = st.integers(min_value=0, max_value=400)
durations = st.builds(Duration, years=counts, months=counts, days=counts, hours=counts).filter(bool)
times = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                     timezones=st.just(timezone.utc))


@settings(max_examples=300, deadline=None)
@given(d=durations)
def test_a_duration_reads_back_from_its_text(d: Duration) -> None:
    assert parse_duration(str(d)) == d


@settings(max_examples=300, deadline=None)
@given(d=durations, t=times, more=st.integers(min_value=1, max_value=100))
def test_longer_durations_reach_further_back(d: Duration, t: datetime, more: int) -> None:
    before = d.before(t)
    assert before < t
    longer = Duration(d.years, d.months, d.days + more, d.hours)
    assert longer.before(t) < before


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=8))
def test_anything_else_is_refused_with_a_message(text: str) -> None:
    try:
        d = parse_duration(text)
    except TimeSpecError as exc:
        assert "duration" in str(exc)
    else:
        assert d and text.strip()


def test_a_zero_duration_is_refused() -> None:
    for text in ("0h", "0d0h", "00w"):
        with pytest.raises(TimeSpecError, match="zero"):
            parse_duration(text)


def test_examples() -> None:
    assert parse_duration("1y6m") == Duration(years=1, months=6)
    assert parse_duration("2w3d") == Duration(days=17)
    assert parse_duration("36h") == Duration(hours=36)
    march31 = datetime(2026, 3, 31, 12, tzinfo=timezone.utc)
    assert parse_duration("1m").before(march31) == datetime(2026, 2, 28, 12, tzinfo=timezone.utc)
    assert parse_duration("1y").before(datetime(2024, 2, 29, tzinfo=timezone.utc)) == datetime(
        2023, 2, 28, tzinfo=timezone.utc)
    for bad in ("", "d", "1", "1x", "1d1y", "-1d", "1.5d"):
        with pytest.raises(TimeSpecError):
            parse_duration(bad)


def test_times() -> None:
    now = datetime(2026, 12, 4, 12, tzinfo=timezone.utc)
    assert parse_time("2d", now) == now - timedelta(days=2)
    assert parse_time("2026-12-01T08:30:00+00:00") == datetime(2026, 12, 1, 8, 30, tzinfo=timezone.utc)
    local = parse_time("2026-12-01 08:30")
    assert local.tzinfo is not None and local.replace(tzinfo=None) == datetime(2026, 12, 1, 8, 30)
    with pytest.raises(TimeSpecError):
        parse_time("yesterday")
