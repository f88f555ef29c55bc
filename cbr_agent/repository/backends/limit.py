"""LimitedBackend: upload and download bandwidth limits (KiB/s) for any backend, as token buckets.

A put waits, before it is sent, until the bucket has credit for its size; a get is charged for what it
returned. The bucket holds at most one second of credit, so a long idle time is no licence for a burst.
Objects larger than that just go into debt: the next transfer waits for it, so the average holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence

from cbr_agent.repository.backend import Backend, Buffer


class TokenBucket:
    """``rate`` bytes per second, shared by every thread; ``take(n)`` sleeps as long as the rate needs."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = rate  # one second of burst
        self._last = clock()
        self._mutex = threading.Lock()

    def take(self, n: int) -> None:
        with self._mutex:  # reserve now (may go negative), wait outside the lock
            now = self._clock()
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class LimitedBackend:
    def __init__(self, inner: Backend, *, upload_kib: float = 0.0, download_kib: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.inner = inner
        self.location = inner.location
        self.upload = TokenBucket(upload_kib * 1024, clock=clock, sleep=sleep) if upload_kib > 0 else None
        self.download = (TokenBucket(download_kib * 1024, clock=clock, sleep=sleep)
                         if download_kib > 0 else None)

    def put(self, name: str, data: Buffer | Sequence[Buffer]) -> None:
        if self.upload is not None:
            size = len(data) if isinstance(data, (bytes, bytearray, memoryview)) else sum(map(len, data))
            self.upload.take(size)
        self.inner.put(name, data)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self.inner.get(name, offset, length)
        if self.download is not None:
            self.download.take(len(data))
        return data

    def list(self, type_: str) -> Iterator[tuple[str, int]]:
        return self.inner.list(type_)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def exists(self, name: str) -> bool:
        return self.inner.exists(name)

    def size(self, name: str) -> int:
        return self.inner.size(name)

    def create(self) -> None:
        self.inner.create()

    def is_present(self) -> bool:
        return self.inner.is_present()

    def is_empty(self) -> bool:
        return self.inner.is_empty()

    def open_spool(self) -> None:
        return None  # packs go through put: the upload limit applies in put

    def __getattr__(self, attr: str) -> object:
        return getattr(self.inner, attr)
