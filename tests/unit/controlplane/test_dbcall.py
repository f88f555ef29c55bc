"""The database threads: calls run off the event loop, results and exceptions come back to it."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cbr_agent.controlplane.dbcall import DbCalls


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
