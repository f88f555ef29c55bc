"""The ``backup_schedule`` grammar and the next due time of a schedule.

Two forms: an interval (``30m``, ``6h``, ``1d``, ``90s``, combinations such as ``1h30m``) counted from
the end of the previous backup, or a daily local wall-clock time (``daily 02:30``). Standard library only:
:mod:`cbr_agent.config` validates the key with :func:`parse_schedule`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"(?:(\d+)([smhd]))+")
_PART = re.compile(r"(\d+)([smhd])")
_DAILY = re.compile(r"daily\s+(\d{1,2}):(\d{2})")
#: shorter intervals would back up continuously; a typo such as '1s' for '1d' is caught here
MIN_INTERVAL_SECONDS = 1


@dataclass(frozen=True)
class Schedule:
    """``interval`` seconds between backups, or a daily ``(hour, minute)`` in local time."""

    text: str
    interval: float | None = None
    daily: tuple[int, int] | None = None

    def next_after(self, last_end: datetime | None, now: datetime) -> datetime:
        """When the next backup is due, given when the last one ended (None: never ran)."""
        if self.interval is not None:
            if last_end is None:
                return now
            return max(now, last_end + timedelta(seconds=self.interval))
        assert self.daily is not None
        hour, minute = self.daily
        today = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        due = today if today > now else today + timedelta(days=1)
        # a run missed while the host was down (last run before the previous slot) is due now
        previous_slot = due - timedelta(days=1)
        if last_end is not None and last_end < previous_slot:
            return now
        return due


def parse_schedule(text: str) -> Schedule:
    """Parse ``6h``, ``1h30m``, ``daily 02:30``; ValueError names what is expected."""
    value = " ".join(str(text).strip().lower().split())
    daily = _DAILY.fullmatch(value)
    if daily:
        hour, minute = int(daily.group(1)), int(daily.group(2))
        if hour > 23 or minute > 59:
            raise ValueError(f"'{text}' is not a time of day (HH:MM from 00:00 to 23:59)")
        return Schedule(text=value, daily=(hour, minute))
    if _INTERVAL.fullmatch(value):
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(value))
        if seconds < MIN_INTERVAL_SECONDS:
            raise ValueError(f"interval '{text}' is zero")
        return Schedule(text=value, interval=float(seconds))
    raise ValueError(f"'{text}' is neither an interval like '30m', '6h', '1d' nor 'daily HH:MM'")
