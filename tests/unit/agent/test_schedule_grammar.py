"""The backup_schedule grammar and when the next backup is due."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.agent.schedule import parse_schedule

UTC = timezone.utc


@pytest.mark.parametrize(("text", "seconds"), [
    ("30m", 1800), ("6h", 21600), ("1d", 86400), ("90s", 90), ("1h30m", 5400), (" 2H ", 7200),
])
def test_intervals(text: str, seconds: int) -> None:
    assert parse_schedule(text).interval == seconds


@pytest.mark.parametrize(("text", "daily"), [("daily 02:30", (2, 30)), ("DAILY  7:05", (7, 5)),
                                             ("daily 23:59", (23, 59))])
def test_daily(text: str, daily: tuple[int, int]) -> None:
    assert parse_schedule(text).daily == daily


@pytest.mark.parametrize(("text", "message"), [
    ("", "neither"), ("6", "neither"), ("h", "neither"), ("6 hours", "neither"), ("-1h", "neither"),
    ("0m", "zero"), ("daily", "neither"), ("daily 24:00", "time of day"), ("daily 12:60", "time of day"),
    ("weekly 02:00", "neither"), ("1.5h", "neither"),
])
def test_refused_with_what_is_expected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule(text)


def test_interval_due_now_when_never_run_then_after_the_interval() -> None:
    schedule = parse_schedule("6h")
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert schedule.next_after(None, now) == now
    assert schedule.next_after(now - timedelta(hours=1), now) == now + timedelta(hours=5)
    assert schedule.next_after(now - timedelta(hours=7), now) == now  # overdue: now


def test_daily_waits_for_the_slot_and_catches_up_a_missed_one() -> None:
    schedule = parse_schedule("daily 02:30")
    now = datetime(2026, 1, 2, 1, 0, tzinfo=UTC)
    slot_today = datetime(2026, 1, 2, 2, 30, tzinfo=UTC)
    assert schedule.next_after(None, now) == slot_today
    assert schedule.next_after(datetime(2026, 1, 1, 2, 40, tzinfo=UTC), now) == slot_today
    # last run before yesterday's slot: the host was down at 02:30 yesterday, so run now
    assert schedule.next_after(datetime(2025, 12, 31, 3, 0, tzinfo=UTC), now) == now
    later = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    assert schedule.next_after(slot_today + timedelta(minutes=5), later) == slot_today + timedelta(days=1)


@given(st.integers(1, 10**6), st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
       st.integers(0, 10**7))
def test_interval_next_is_never_in_the_past_nor_early(seconds: int, now: datetime, ago: int) -> None:
    now = now.replace(tzinfo=UTC)
    schedule = parse_schedule(f"{seconds}s")
    last = now - timedelta(seconds=ago)
    due = schedule.next_after(last, now)
    assert (due >= now and due >= last + timedelta(seconds=seconds)) or due == now
    assert due <= max(now, last + timedelta(seconds=seconds))


@given(st.integers(0, 23), st.integers(0, 59),
       st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_daily_next_is_within_a_day_at_the_slot(hour: int, minute: int, now: datetime) -> None:
    now = now.replace(tzinfo=UTC)
    due = parse_schedule(f"daily {hour:02d}:{minute:02d}").next_after(now, now)
    assert now < due <= now + timedelta(days=1)
    assert (due.hour, due.minute, due.second) == (hour, minute, 0)


@given(st.text(max_size=20))
def test_any_text_parses_or_is_refused_with_a_value_error(text: str) -> None:
    try:
        schedule = parse_schedule(text)
    except ValueError as exc:
        assert "'" in str(exc)  # names what was given
    else:
        assert (schedule.interval is None) != (schedule.daily is None)
        assert schedule.interval is None or schedule.interval >= 1
