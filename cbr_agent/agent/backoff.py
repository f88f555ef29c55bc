"""How long the daemon waits between heartbeats, and after failures (capped exponential backoff)."""

from __future__ import annotations

import random

#: heartbeats are spread over +-10 % of the interval so a fleet started at once does not beat in step
JITTER = 0.1
#: the longest wait after failures, in heartbeat intervals (and never above MAX_BACKOFF seconds)
BACKOFF_CAP_INTERVALS = 5.0
MAX_BACKOFF = 300.0


def heartbeat_delay(interval: float, rng: random.Random) -> float:
    return interval * rng.uniform(1.0 - JITTER, 1.0 + JITTER)


def failure_delay(interval: float, failures: int, rng: random.Random) -> float:
    """Wait after ``failures`` failed attempts in a row (1-based): doubling from a quarter of the
    interval (at most 5 s) up to the cap, with jitter so that recovering fleets do not stampede."""
    base = min(max(interval / 4.0, 0.05), 5.0)
    cap = max(base, min(BACKOFF_CAP_INTERVALS * interval, MAX_BACKOFF))
    ceiling = min(cap, base * 2.0 ** max(failures - 1, 0))
    return rng.uniform(0.5 * ceiling, ceiling)
