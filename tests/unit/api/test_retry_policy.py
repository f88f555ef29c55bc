"""The numbers of the retry policy: backoff bounds, Retry-After parsing and its cap."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.api.retry import RETRYABLE_STATUSES, RetryPolicy, parse_retry_after

NOW = 1_700_000_000.0


@given(st.integers(min_value=1, max_value=60), st.integers(min_value=0, max_value=2**32))
def test_backoff_is_full_jitter_under_an_exponential_capped_ceiling(retry: int, seed: int) -> None:
    policy = RetryPolicy(rng=random.Random(seed))
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (retry - 1))
    assert 0.0 <= policy.backoff(retry) <= ceiling <= policy.max_delay


def test_backoff_spreads_over_the_whole_interval() -> None:
    policy = RetryPolicy(rng=random.Random(7))
    draws = [policy.backoff(3) for _ in range(2000)]  # ceiling 2.0 s
    assert min(draws) < 0.1 and max(draws) > 1.9  # full jitter: from ~0 to the ceiling


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0
    when = format_datetime(datetime.fromtimestamp(NOW + 42, timezone.utc), usegmt=True)
    assert parse_retry_after(when, now=NOW) == pytest.approx(42.0)
    past = format_datetime(datetime.fromtimestamp(NOW - 42, timezone.utc), usegmt=True)
    assert parse_retry_after(past, now=NOW) == 0.0


@pytest.mark.parametrize("value", ["-3", "soon", "1.5e3", "", "Thu, 99 Foo 2024 99:99:99 GMT"])
def test_unusable_retry_after_is_ignored(value: str) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_delay_honours_retry_after_up_to_the_cap_else_backs_off() -> None:
    policy = RetryPolicy(rng=random.Random(1))
    assert policy.delay(1, "3") == 3.0
    assert policy.delay(1, "3600") == policy.retry_after_cap == 30.0
    assert 0.0 <= policy.delay(2, "nonsense") <= 1.0
    assert 0.0 <= policy.delay(2, None) <= 1.0


def test_retryable_statuses() -> None:
    assert {429, 500, 502, 503, 504} == RETRYABLE_STATUSES
    assert 501 not in RETRYABLE_STATUSES and 400 not in RETRYABLE_STATUSES


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)
