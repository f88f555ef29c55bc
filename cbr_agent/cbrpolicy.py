"""CBR backup policies: the trigger's RRULE subset (when to back up) and the retention rules (what to
keep), shared by the control plane (which validates them) and the agent (which runs them from its cache).

Trigger patterns (spec/backup-lifecycle-apis.md, section 2.1), all in UTC::

    FREQ=DAILY;INTERVAL=1;BYHOUR=6;BYMINUTE=00
    FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU;BYHOUR=14;BYMINUTE=00

Settled here: ``BYHOUR`` and ``BYMINUTE`` are required (the reference's examples always give them, and
"the creation time's hour" would make a policy fire at a time nobody chose); each may list several
values (``BYHOUR=0,12``); ``INTERVAL`` (default 1) counts days or weeks from the policy's
``start_time``; all time points of all patterns are at least one hour apart, at most 24 a day.

Retention (``operation_definition``) applies to automatic backups of one resource:
``retention_duration_days`` (older ones go), else the ``max_backups`` newest plus the newest of each
of the last ``day/week/month/year_backups`` days/weeks/months/years in ``timezone``. Neither set:
kept forever.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
MAX_PATTERNS = 24
RETENTION_KEYS = (
    "max_backups",
    "retention_duration_days",
    "day_backups",
    "week_backups",
    "month_backups",
    "year_backups",
)
_TZ_RE = re.compile(r"UTC([+-])(\d{2}):(\d{2})\Z")


class PolicyError(ValueError):
    """A pattern or retention rule that cannot be used; the message names what is wrong."""


@dataclass(frozen=True)
class Rule:
    freq: str  # DAILY or WEEKLY
    interval: int
    days: tuple[int, ...]  # weekday numbers (Monday 0) for WEEKLY; all days for DAILY
    times: tuple[int, ...]  # minutes after midnight UTC, sorted


def _numbers(text: str, key: str, low: int, high: int) -> list[int]:
    values = []
    for part in text.split(","):
        if not part.isdigit() or not low <= int(part) <= high:
            raise PolicyError(f"{key}={text!r}: each value must be a number from {low} to {high}")
        values.append(int(part))
    return values


def parse_rule(pattern: str) -> Rule:
    """One RRULE string of the subset, or PolicyError."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise PolicyError("a trigger pattern must be a non-empty string")
    fields: dict[str, str] = {}
    for part in pattern.strip().removeprefix("RRULE:").split(";"):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().upper()
        if not sep or not value:
            raise PolicyError(f"{part!r} is not KEY=VALUE")
        if key not in ("FREQ", "INTERVAL", "BYDAY", "BYHOUR", "BYMINUTE"):
            raise PolicyError(f"{key} is not supported; use FREQ, INTERVAL, BYDAY, BYHOUR and BYMINUTE")
        if key in fields:
            raise PolicyError(f"{key} is given twice")
        fields[key] = value.strip().upper()
    freq = fields.get("FREQ")
    if freq not in ("DAILY", "WEEKLY"):
        raise PolicyError(f"FREQ must be DAILY or WEEKLY, got {freq!r}")
    interval = _numbers(fields.get("INTERVAL", "1"), "INTERVAL", 1, 1000)
    if len(interval) != 1:
        raise PolicyError("INTERVAL takes one number")
    for key in ("BYHOUR", "BYMINUTE"):
        if key not in fields:
            raise PolicyError(f"{key} is required (times are UTC), e.g. BYHOUR=14;BYMINUTE=00")
    hours = _numbers(fields["BYHOUR"], "BYHOUR", 0, 23)
    minutes = _numbers(fields["BYMINUTE"], "BYMINUTE", 0, 59)
    if "BYDAY" in fields:
        names = fields["BYDAY"].split(",")
        bad = [n for n in names if n not in DAYS]
        if bad:
            raise PolicyError(f"BYDAY: {', '.join(bad)} not one of {' '.join(DAYS)}")
        days = tuple(sorted({DAYS.index(n) for n in names}))
    elif freq == "WEEKLY":
        raise PolicyError("FREQ=WEEKLY needs BYDAY, e.g. BYDAY=MO,WE,FR")
    else:
        days = tuple(range(7))
    times = tuple(sorted({h * 60 + m for h in hours for m in minutes}))
    return Rule(freq, interval[0], days, times)


def parse_patterns(patterns: Any) -> tuple[Rule, ...]:
    """Every pattern of a trigger; the whole set must keep runs an hour apart, 24 a day at most."""
    if not isinstance(patterns, list) or not patterns:
        raise PolicyError("trigger.properties.pattern must be a non-empty array of strings")
    if len(patterns) > MAX_PATTERNS:
        raise PolicyError(f"trigger.properties.pattern has {len(patterns)} rules; at most {MAX_PATTERNS}")
    rules = tuple(parse_rule(p) for p in patterns)
    times = sorted({t for r in rules for t in r.times})
    if len(times) > 24:
        raise PolicyError("at most 24 time points a day")
    for a, b in zip(times, [*times[1:], times[0] + 1440], strict=True):
        if len(times) > 1 and b - a < 60:
            raise PolicyError(
                f"runs at {a // 60:02d}:{a % 60:02d} and {b % 1440 // 60:02d}:"
                f"{b % 60:02d} UTC are less than an hour apart"
            )
    return rules


def next_run(rules: Sequence[Rule], after: datetime, start: datetime) -> datetime:
    """The first time strictly after ``after`` (aware) that any rule fires; ``start`` anchors INTERVAL."""
    after = after.astimezone(timezone.utc)
    start_day = start.astimezone(timezone.utc).date()
    best: datetime | None = None
    for rule in rules:
        for offset in range(0, 7 * rule.interval + 8):
            day = after.date() + timedelta(days=offset)
            if day.weekday() not in rule.days:
                continue
            if rule.interval > 1:
                elapsed = (day - start_day).days
                period = elapsed // 7 if rule.freq == "WEEKLY" else elapsed
                if elapsed < 0 or period % rule.interval:
                    continue
            base = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            found = next(
                (base + timedelta(minutes=t) for t in rule.times if base + timedelta(minutes=t) > after), None
            )
            if found is not None:
                best = found if best is None or found < best else best
                break
    if best is None:
        raise PolicyError("the trigger never fires")
    return best


# -- retention ---------------------------------------------------------------------------------------


def parse_timezone(text: str) -> timezone:
    match = _TZ_RE.match(text or "")
    if not match:
        raise PolicyError(f"timezone must look like UTC+08:00, got {text!r}")
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14):
        raise PolicyError(f"timezone {text!r} is more than 14 hours from UTC")
    return timezone(-delta if sign == "-" else delta)


def check_retention(definition: dict[str, Any]) -> dict[str, Any]:
    """The retention fields, checked: integers in range, the reference's exclusions (zeros tolerated)."""
    out: dict[str, Any] = {}
    bounds = {
        "max_backups": (-1, 99999),
        "retention_duration_days": (-1, 99999),
        "day_backups": (0, 100),
        "week_backups": (0, 100),
        "month_backups": (0, 100),
        "year_backups": (0, 100),
        "full_backup_interval": (-1, 100),
    }
    for key, (low, high) in bounds.items():
        value = definition.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise PolicyError(f"operation_definition.{key} must be an integer from {low} to {high}")
        out[key] = value
    if definition.get("timezone") is not None:
        parse_timezone(definition["timezone"])
        out["timezone"] = definition["timezone"]
    counters = [k for k in ("day_backups", "week_backups", "month_backups", "year_backups") if out.get(k)]
    if out.get("retention_duration_days", -1) > 0 and (out.get("max_backups", -1) > 0 or counters):
        raise PolicyError(
            "operation_definition.retention_duration_days cannot be combined with "
            "max_backups or day/week/month/year_backups"
        )
    if counters and "timezone" not in out:
        raise PolicyError(f"operation_definition.timezone is required with {', '.join(counters)}")
    if out.get("retention_duration_days") == 0:
        raise PolicyError("operation_definition.retention_duration_days must be -1 or at least 1")
    return out


T = TypeVar("T")


def to_forget(
    items: Sequence[T], time_of: Callable[[T], datetime], definition: dict[str, Any], now: datetime
) -> list[T]:
    """Which of ``items`` (one resource's automatic backups) the retention rules remove."""
    newest_first = sorted(items, key=time_of, reverse=True)
    days = definition.get("retention_duration_days") or -1
    if days > 0:
        cutoff = now - timedelta(days=days)
        return [i for i in newest_first if time_of(i) < cutoff]
    max_backups = definition.get("max_backups") or -1
    counters = {
        k: definition.get(k) or 0 for k in ("day_backups", "week_backups", "month_backups", "year_backups")
    }
    if max_backups <= 0 and not any(counters.values()):
        return []
    keep: set[int] = {id(i) for i in newest_first[: max(max_backups, 0)]}
    tz = parse_timezone(definition["timezone"]) if any(counters.values()) else timezone.utc
    buckets: dict[str, Callable[[datetime], Any]] = {
        "day_backups": lambda t: t.date(),
        "week_backups": lambda t: t.isocalendar()[:2],
        "month_backups": lambda t: (t.year, t.month),
        "year_backups": lambda t: t.year,
    }
    for key, count in counters.items():
        seen: set[Any] = set()
        for item in newest_first:
            if len(seen) >= count:
                break
            bucket = buckets[key](time_of(item).astimezone(tz))
            if bucket not in seen:
                seen.add(bucket)
                keep.add(id(item))
    return [i for i in newest_first if id(i) not in keep]
