"""Durations and points in time as the commands take them (``forget --keep-within``, ``find --newest``).

A duration is a sequence of ``<number><unit>`` with units ``y`` (years), ``m`` (months), ``w`` (weeks),
``d`` (days), ``h`` (hours), each at most once and in that order: ``1y6m``, ``2w``, ``36h``, ``1d12h``.
Years and months are calendar units (``1m`` before March 31 is February 28 or 29), as in restic.

A point in time is an ISO 8601 date or date-time (``2026-12-01``, ``2026-12-01 08:30``,
``2026-12-01T08:30:00+02:00``; without a zone it is local time) or a duration, meaning that long ago.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?")
#: beyond this a date would leave datetime's range; nobody keeps snapshots for longer
_MAX_YEARS = 5000


class TimeSpecError(ValueError):
    """A duration or time that cannot be read; the message names it and shows the accepted forms."""


@dataclass(frozen=True)
class Duration:
    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def __bool__(self) -> bool:
        return bool(self.years or self.months or self.days or self.hours)

    def before(self, t: datetime) -> datetime:
        """``t`` minus this duration (calendar years and months; the day clamped to the month's end)."""
        months = t.year * 12 + (t.month - 1) - self.years * 12 - self.months
        year, month = divmod(months, 12)
        if year < 1:
            return datetime.min.replace(tzinfo=t.tzinfo)
        day = min(t.day, calendar.monthrange(year, month + 1)[1])
        moved = t.replace(year=year, month=month + 1, day=day)
        try:
            return moved - timedelta(days=self.days, hours=self.hours)
        except OverflowError:
            return datetime.min.replace(tzinfo=t.tzinfo)

    def __str__(self) -> str:
        parts = [(self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h")]
        return "".join(f"{n}{u}" for n, u in parts if n) or "0h"


def parse_duration(text: str) -> Duration:
    """``1y6m``, ``2w``, ``36h``...; TimeSpecError for anything else (also for an empty or zero duration)."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise TimeSpecError(f"{text!r} is not a duration (use e.g. 7d, 2w, 6m, 1y6m, 36h: "
                            "y years, m months, w weeks, d days, h hours)")
    years, months, weeks, days, hours = (int(g or 0) for g in match.groups())
    if not (years or months or weeks or days or hours):
        raise TimeSpecError(f"{text!r} is a duration of zero; give a length of time, e.g. 7d or 36h")
    if years + months // 12 > _MAX_YEARS:
        raise TimeSpecError(f"duration {text!r} is too long")
    return Duration(years=years, months=months, days=days + 7 * weeks, hours=hours)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An aware datetime from an ISO date/date-time (local when it has no zone) or a duration ago."""
    value = text.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            ago = parse_duration(value)
        except TimeSpecError:
            raise TimeSpecError(f"{text!r} is neither a date/time (2026-12-01, 2026-12-01 08:30) nor "
                                "a duration ago (7d, 2w, 36h)") from None
        return ago.before(now or datetime.now(timezone.utc))
    return parsed if parsed.tzinfo else parsed.astimezone()
