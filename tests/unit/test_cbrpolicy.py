"""The policy trigger's RRULE subset and the retention rules (cbr_agent.cbrpolicy)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.cbrpolicy import (
    DAYS,
    PolicyError,
    check_retention,
    next_run,
    parse_patterns,
    parse_rule,
    to_forget,
)

UTC = timezone.utc
START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


def test_reference_examples_parse() -> None:
    rule = parse_rule("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYHOUR=14;BYMINUTE=00")
    assert rule.days == tuple(range(7)) and rule.times == (14 * 60,)
    daily = parse_rule("FREQ=DAILY;INTERVAL=1;BYHOUR=6;BYMINUTE=00")
    assert daily.interval == 1 and daily.times == (360,)


@pytest.mark.parametrize(
    "pattern",
    [
        "FREQ=HOURLY;BYHOUR=1;BYMINUTE=0",
        "FREQ=DAILY;BYMINUTE=0",
        "FREQ=DAILY;BYHOUR=24;BYMINUTE=0",
        "FREQ=WEEKLY;BYHOUR=1;BYMINUTE=0",
        "FREQ=WEEKLY;BYDAY=XX;BYHOUR=1;BYMINUTE=0",
        "FREQ=DAILY;BYHOUR=1;BYMINUTE=0;COUNT=3",
        "FREQ=DAILY;BYHOUR=1;BYMINUTE=0,30",
        "",
    ],
)
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(PolicyError):
        parse_patterns([pattern])


def test_runs_less_than_an_hour_apart_across_rules_are_refused() -> None:
    with pytest.raises(PolicyError, match="less than an hour"):
        parse_patterns(["FREQ=DAILY;BYHOUR=1;BYMINUTE=0", "FREQ=DAILY;BYHOUR=1;BYMINUTE=30"])
    with pytest.raises(PolicyError, match="less than an hour"):
        parse_patterns(["FREQ=DAILY;BYHOUR=23;BYMINUTE=30", "FREQ=DAILY;BYHOUR=0;BYMINUTE=10"])


def test_next_run_daily_weekly_and_interval() -> None:
    daily = parse_patterns(["FREQ=DAILY;BYHOUR=6;BYMINUTE=0"])
    assert next_run(daily, START + timedelta(hours=5), START) == START + timedelta(hours=6)
    assert next_run(daily, START + timedelta(hours=6), START) == START + timedelta(days=1, hours=6)
    monday = parse_patterns(["FREQ=WEEKLY;BYDAY=MO;BYHOUR=1;BYMINUTE=0"])
    assert next_run(monday, START + timedelta(days=1), START) == START + timedelta(days=7, hours=1)
    every_other = parse_patterns(["FREQ=DAILY;INTERVAL=2;BYHOUR=0;BYMINUTE=30"])
    assert next_run(every_other, START + timedelta(hours=1), START) == START + timedelta(days=2, minutes=30)


rules = st.builds(
    lambda freq, days, hour, minute: f"FREQ={freq};BYDAY={','.join(days)};BYHOUR={hour};BYMINUTE={minute}",
    st.sampled_from(["DAILY", "WEEKLY"]),
    st.lists(st.sampled_from(DAYS), min_size=1, unique=True),
    st.integers(0, 23),
    st.integers(0, 59),
)


@given(rules, st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)))
def test_next_run_is_the_first_matching_minute_after(pattern: str, after: datetime) -> None:
    parsed = parse_patterns([pattern])
    after = after.replace(tzinfo=UTC)
    found = next_run(parsed, after, START)
    rule = parsed[0]
    assert found > after and found - after <= timedelta(days=7)
    assert found.weekday() in rule.days and found.hour * 60 + found.minute in rule.times
    # nothing matches in between: check each day's time point before it
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < found:
        point = day + timedelta(minutes=rule.times[0])
        assert not (after < point < found and point.weekday() in rule.days)
        day += timedelta(days=1)


def test_retention_checks() -> None:
    assert check_retention({"max_backups": 3}) == {"max_backups": 3}
    for bad in (
        {"max_backups": -7},
        {"day_backups": 2},
        {"retention_duration_days": 3, "max_backups": 2},
        {"timezone": "UTC+8"},
        {"max_backups": True},
    ):
        with pytest.raises(PolicyError):
            check_retention(bad)
    # the reference's own example: zeros beside retention_duration_days are tolerated
    check_retention({"retention_duration_days": 1, "day_backups": 0, "timezone": "UTC+08:00"})


def test_to_forget() -> None:
    times = [START + timedelta(days=i) for i in range(10)]
    now = times[-1]
    assert to_forget(times, lambda t: t, {"max_backups": 3}, now) == times[:7][::-1]
    assert to_forget(times, lambda t: t, {"retention_duration_days": 5}, now) == times[:4][::-1]
    assert to_forget(times, lambda t: t, {}, now) == []
    kept_weeks = set(times) - set(
        to_forget(times, lambda t: t, {"week_backups": 2, "timezone": "UTC+00:00"}, now)
    )
    assert kept_weeks == {times[-1], times[6]}  # the newest of this ISO week and of the week before
