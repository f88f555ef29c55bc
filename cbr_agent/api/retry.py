"""When and how long the HTTP client waits before trying a control-plane call again.

The policy (documented in the README section of the client and the module docstring of
:mod:`cbr_agent.api.client`):

- at most ``max_attempts`` attempts in all (default 4: the first try and three retries);
- retried: no answer at all (connection refused, DNS failure, connect or read timeout, connection
  dropped) and the statuses in :data:`RETRYABLE_STATUSES` (429 and the transient 5xx);
- never retried: a TLS failure (a wrong certificate does not heal by waiting), any other 4xx, 501;
- wait before retry ``n`` (1-based): the server's ``Retry-After`` when it sent one (delta seconds or an
  HTTP-date), capped at ``retry_after_cap``; otherwise exponential backoff with full jitter,
  ``uniform(0, min(max_delay, base_delay * 2 ** (n - 1)))``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

#: 429 Too Many Requests and the 5xx that mean "try again later"; 501 (not implemented) never heals
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    retry_after_cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def backoff(self, retry: int) -> float:
        """Full-jitter exponential backoff before retry number ``retry`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return self.rng.uniform(0.0, ceiling)

    def delay(self, retry: int, retry_after: str | None = None, now: float | None = None) -> float:
        """Seconds to wait before retry ``retry``: ``Retry-After`` (capped) if usable, else backoff."""
        asked = parse_retry_after(retry_after, now) if retry_after else None
        if asked is not None:
            return min(asked, self.retry_after_cap)
        return self.backoff(retry)


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds from ``Retry-After`` (``120`` or ``Wed, 21 Oct 2015 07:28:00 GMT``); None if unusable.

    A date in the past means "now" (0). Negative or malformed values are ignored (None), so the caller
    falls back to its own backoff."""
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
