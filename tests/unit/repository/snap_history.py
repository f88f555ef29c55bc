"""Snapshot stand-ins for the retention tests: retention reads only time, host, paths, tags and id."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@dataclass
class Snap:
    time: datetime
    host: str = "h"
    paths: list[str] = field(default_factory=lambda: ["/data"])
    tags: list[str] = field(default_factory=list)
    id: str = ""
