"""Database calls off the event loop (issue 13): every store call of the HTTP server runs on a few
threads of its own, so a slow query, a busy SQLite writer lock or a PostgreSQL round trip never
stalls the other requests, the long polls' timers or the accept loop.

Our own threads rather than anyio's (40 threads shared with everything else), for two reasons:
- their number follows the store: SQLite serializes writers, so one thread per process is best (more
  only contend for the file's lock and the GIL); PostgreSQL gets as many as its connection pool;
- the hop is batched: a thread takes every call queued meanwhile, and hands all their results back to
  the event loop with one wakeup. Under load that keeps the hop's cost (a futex and an eventfd write
  per call with ``run_in_executor``, +50 % CPU per heartbeat when measured) to a fraction.
Each thread keeps its database connection for its life.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from cbr_agent.errors import ApiError

T = TypeVar("T")

#: threads for a SQLite store (see above)
SQLITE_THREADS = 1
_STOP = object()

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


def database_unavailable(exc: ApiError) -> bool:
    """A 503 from the store: no database connection to be had within its timeout. The calls batched
    behind it get the same answer at once: each would wait that timeout again for the same missing
    connection, and none of the batch's answers leave before the last (so one batch of four took four
    timeouts, 12 s, when PostgreSQL went down)."""
    return exc.status == 503


def _same_error(exc: ApiError) -> ApiError:
    again = ApiError(exc.status, exc.error_code, exc.error_msg)
    again.__dict__.update(vars(exc))  # Retry-After too
    return again


def _deliver(done: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in done:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class DbCalls:
    """``await db(fn, *args)`` runs ``fn(*args)`` on the database threads and returns its result
    (or raises its exception) on the event loop."""

    def __init__(self, threads: int = SQLITE_THREADS) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        # one thread takes up to 64 calls at a time; several threads (PostgreSQL, where each call
        # waits on the network) take few, so that the others are not left idle
        self._batch = 64 if threads == 1 else 4
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self.threads:
                thread = threading.Thread(target=self._work, name=f"cbr-db-{len(self._threads)}",
                                          daemon=True)
                thread.start()
                self._threads.append(thread)

    async def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        if len(self._threads) < self.threads:
            self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return await future

    def _work(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._batch:  # what queued meanwhile goes back in the same wakeup
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
            stop = False
            unavailable: ApiError | None = None
            for item in batch:
                if item is _STOP:
                    if stop:  # one batch took two threads' stops: leave the other its own
                        self._queue.put(_STOP)
                    stop = True
                    continue
                loop, future, fn, args = item
                outcome: tuple[asyncio.Future[Any], bool, Any]
                if unavailable is not None:  # see database_unavailable
                    outcome = (future, False, _same_error(unavailable))
                else:
                    try:
                        outcome = (future, True, fn(*args))
                    except BaseException as exc:  # handed to the awaiting request
                        outcome = (future, False, exc)
                        if isinstance(exc, ApiError) and database_unavailable(exc):
                            unavailable = exc
                by_loop.setdefault(loop, []).append(outcome)
            for loop, done in by_loop.items():
                if not loop.is_closed():
                    loop.call_soon_threadsafe(_deliver, done)
            if stop:
                return

    def close(self) -> None:
        """Let queued calls finish, then stop the threads."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(_STOP)
        for thread in threads:
            thread.join(timeout=30)
