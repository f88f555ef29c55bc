"""Counters a long operation (restore, check, prune) keeps for whoever wants to show its progress.

The engine only counts; a front end (the CLI's progress line) reads the counters from its own thread at
its own pace. The fields are plain attributes written by the engine's threads under their own locks or
by one thread; a reader may see a value a moment old, which a progress line does not mind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: seconds between two refreshes of a progress display (4 a second: live, and cheap)
REFRESH_SECONDS = 0.25


def refresh_seconds() -> float:
    """REFRESH_SECONDS; ``CBR_AGENT_TEST_PROGRESS_SECONDS`` shortens it for tests of short runs."""
    try:
        return float(os.environ.get("CBR_AGENT_TEST_PROGRESS_SECONDS", REFRESH_SECONDS))
    except ValueError:
        return REFRESH_SECONDS


@dataclass
class Progress:
    #: what is being done now, for people: "reading packs", "rewriting packs" ...
    phase: str = ""
    #: what ``items_*`` count: "files", "packs", "snapshots"
    unit: str = ""
    items_done: int = 0
    items_total: int | None = None   # None while unknown
    bytes_done: int = 0
    bytes_total: int | None = None   # None while unknown, or when the phase counts no bytes

    def start(self, phase: str, unit: str, *, items_total: int | None = None,
              bytes_total: int | None = None) -> None:
        """A new phase: its counters from zero."""
        self.items_done = self.bytes_done = 0
        self.items_total, self.bytes_total = items_total, bytes_total
        self.phase, self.unit = phase, unit
