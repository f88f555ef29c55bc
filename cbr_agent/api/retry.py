"""When and how long the HTTP client waits before trying a control-plane call again, and what a
failed attempt means (:func:`classify_failure`, :func:`worth_retrying`).

The policy (which failures count as safe to repeat is explained in :mod:`cbr_agent.api.client`):

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
import socket
import ssl
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

#: 429 Too Many Requests and the 5xx that mean "try again later"; 501 (not implemented) never heals
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: CBR's "authentication failed" comes as a 500 (auth-and-errors.md, 3.3): not transient, not a retry
AUTH_FAILED_500 = "BackupService.9998"


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


@dataclass(frozen=True)
class Failure:
    """Why an attempt got no answer."""

    reason: str
    #: True when the request may have reached the server and been acted on
    maybe_processed: bool
    retryable: bool = True
    hint: str | None = None


def classify_failure(exc: requests.RequestException) -> Failure:
    """What an exception from requests means: why there was no answer, whether the request may
    have been processed (only a failure before sending is certain not to be), whether to retry."""
    if isinstance(exc, requests.exceptions.SSLError):
        return Failure(
            f"TLS handshake failed: {_ssl_reason(exc)}", maybe_processed=False, retryable=False,
            hint="check the endpoint's certificate; set ca_bundle to its CA, or tls_verify=false to "
                 "turn verification off")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Failure("timed out connecting", maybe_processed=False)
    if isinstance(exc, requests.exceptions.Timeout):
        return Failure("timed out waiting for the answer", maybe_processed=True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        cause = _find(exc, NewConnectionError)
        if _find(exc, socket.gaierror) is not None:  # urllib3 1.26 and 2.x both chain it
            return Failure("cannot resolve its host name", maybe_processed=False)
        if cause is not None:
            refused = _find(exc, ConnectionRefusedError) is not None or "refused" in str(cause)
            return Failure("connection refused" if refused else "cannot connect", maybe_processed=False)
        return Failure("the connection closed before the answer", maybe_processed=True)
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return Failure("the answer was cut off", maybe_processed=True)
    return Failure(f"request failed ({type(exc).__name__})", maybe_processed=False, retryable=False)


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first ``kind`` in ``exc``, its ``args``, ``reason``, cause and context (urllib3 nests)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        item = todo.pop(0)
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kind):
            return item
        todo += [*item.args, getattr(item, "reason", None), item.__cause__, item.__context__]
    return None


def _ssl_reason(exc: BaseException) -> str:
    verify_error = _find(exc, ssl.SSLCertVerificationError)
    if isinstance(verify_error, ssl.SSLCertVerificationError) and verify_error.verify_message:
        return f"certificate verify failed: {verify_error.verify_message}"
    ssl_error = _find(exc, ssl.SSLError)
    if isinstance(ssl_error, ssl.SSLError) and ssl_error.reason:
        return str(ssl_error.reason).lower().replace("_", " ")
    return "TLS error"


def worth_retrying(status: int, error_code: str, idempotent: bool) -> bool:
    """Whether an error answer may be retried: 429 always (rejected before any work), the transient
    5xx only for an idempotent call (it may have been processed), CBR's auth-failure 500 never."""
    if status not in RETRYABLE_STATUSES or error_code == AUTH_FAILED_500:
        return False
    return status == 429 or idempotent  # a 5xx may have been processed
