"""The database threads: calls run off the event loop, results and exceptions come back to it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cbr_agent.controlplane.dbcall import DbCalls
from cbr_agent.errors import ApiError


def test_calls_run_on_the_database_thread_and_return_their_results() -> None:
    db = DbCalls(1)

    async def main() -> list[tuple[int, str]]:
        return await asyncio.gather(*(db(lambda i=i: (i, threading.current_thread().name))
                                      for i in range(200)))

    try:
        results = asyncio.run(main())
    finally:
        db.close()
    assert [i for i, _ in results] == list(range(200))
    assert {name for _, name in results} == {"cbr-db-0"}
    assert threading.current_thread().name not in {name for _, name in results}


def test_an_exception_reaches_the_caller_and_the_thread_lives_on() -> None:
    db = DbCalls(2)

    def fail() -> None:
        raise LookupError("no such row")

    async def main() -> int:
        with pytest.raises(LookupError, match="no such row"):
            await db(fail)
        return await db(int, "7")

    try:
        assert asyncio.run(main()) == 7
    finally:
        db.close()


def test_the_event_loop_keeps_running_while_a_call_blocks() -> None:
    db = DbCalls(1)
    release = threading.Event()
    ticks = 0

    async def main() -> None:
        nonlocal ticks
        call = asyncio.ensure_future(db(release.wait, 5))
        for _ in range(5):
            await asyncio.sleep(0.01)
            ticks += 1
        release.set()
        assert await call is True

    try:
        asyncio.run(main())
    finally:
        db.close()
    assert ticks == 5


def test_at_least_one_thread() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DbCalls(0)


def test_calls_batched_behind_an_unreachable_database_fail_at_once() -> None:
    """A call that found no database connection within its timeout answers 503: the calls taken in the
    same batch get that answer at once, not one timeout each (and nothing waits for all of them)."""
    db = DbCalls(1)
    release = threading.Event()
    ran: list[int] = []

    def no_connection() -> None:
        time.sleep(0.3)  # the pool's timeout, shortened
        error = ApiError(503, "APIGW.0308", "the control plane's database is unavailable")
        error.retry_after = 2  # type: ignore[attr-defined]
        raise error

    def query(i: int) -> int:
        time.sleep(0.3)
        ran.append(i)
        return i

    async def main() -> list[object]:
        blocker = asyncio.ensure_future(db(release.wait, 5))
        await asyncio.sleep(0.05)  # the thread is busy: the next calls queue up as one batch
        calls = [asyncio.ensure_future(db(no_connection))]
        calls += [asyncio.ensure_future(db(query, i)) for i in range(3)]
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        started = time.monotonic()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert time.monotonic() - started < 0.55  # one timeout, not four
        return results

    try:
        results = asyncio.run(main())
    finally:
        db.close()
    assert ran == []
    assert all(isinstance(r, ApiError) and r.status == 503 for r in results)
    assert all(getattr(r, "retry_after", None) == 2 for r in results)
    assert len({id(r) for r in results}) == 4  # each request raises its own


def test_other_errors_do_not_fail_the_rest_of_the_batch() -> None:
    db = DbCalls(1)
    release = threading.Event()

    def conflict() -> None:
        raise ApiError(409, "CBR.0001", "exists")

    async def main() -> list[object]:
        blocker = asyncio.ensure_future(db(release.wait, 5))
        await asyncio.sleep(0.05)
        calls = [asyncio.ensure_future(db(conflict)), asyncio.ensure_future(db(int, "5"))]
        await asyncio.sleep(0.05)
        release.set()
        await blocker
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        first, second = asyncio.run(main())
    finally:
        db.close()
    assert isinstance(first, ApiError) and first.status == 409
    assert second == 5


def test_close_stops_every_thread_promptly() -> None:
    # one thread's batch may take several threads' stop markers: each must still reach a thread
    for _ in range(5):
        db = DbCalls(4)

        async def main(db: DbCalls = db) -> None:
            await asyncio.gather(*(db(int, str(i)) for i in range(50)))

        asyncio.run(main())
        started = time.monotonic()
        db.close()
        assert time.monotonic() - started < 5
        assert not [t for t in threading.enumerate() if t.name.startswith("cbr-db-") and t.is_alive()]
