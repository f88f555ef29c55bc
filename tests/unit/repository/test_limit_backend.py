"""Bandwidth limits as token buckets, with an injected clock (no test sleeps)."""

from __future__ import annotations

import pytest

from cbr_agent.repository.backends import BackendOptions, open_backend
from cbr_agent.repository.backends.limit import LimitedBackend, TokenBucket
from cbr_agent.repository.backends.memory import MemoryBackend


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_allows_one_second_of_burst_then_holds_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000.0, clock=clock, sleep=clock.sleep)
    bucket.take(1000)
    assert clock.slept == []  # the burst
    start = clock.now
    for _ in range(10):
        bucket.take(500)
    assert clock.now - start == pytest.approx(5.0)  # 5000 bytes at 1000 B/s


def test_idle_time_does_not_build_up_more_than_one_second() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000.0, clock=clock, sleep=clock.sleep)
    clock.now += 3600
    bucket.take(3000)
    assert sum(clock.slept) == pytest.approx(2.0)


def test_limited_backend_charges_puts_and_gets() -> None:
    clock = FakeClock()
    backend = LimitedBackend(MemoryBackend(), upload_kib=1, download_kib=2, clock=clock, sleep=clock.sleep)
    backend.put("index/a", [b"x" * 1024, b"y" * 2048])  # 3 KiB at 1 KiB/s, 1 s of burst
    assert sum(clock.slept) == pytest.approx(2.0)
    clock.slept.clear()
    assert len(backend.get("index/a")) == 3072  # 3 KiB at 2 KiB/s, 1 s of burst
    assert sum(clock.slept) == pytest.approx(0.5)
    assert list(backend.list("index")) == [("a", 3072)]


def test_open_backend_wraps_only_when_a_limit_is_set(tmp_path) -> None:
    assert not isinstance(open_backend(str(tmp_path)), LimitedBackend)
    limited = open_backend(str(tmp_path), BackendOptions(limit_download=10))
    assert isinstance(limited, LimitedBackend) and limited.upload is None and limited.download is not None
