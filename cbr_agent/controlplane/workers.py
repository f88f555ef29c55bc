"""``cbr-agent server --workers N``: N server processes on one listening socket (issue 13).

A pre-fork of our own rather than uvicorn's ``workers`` (which re-imports the application from a
string in spawned processes and binds the socket itself): the parent has already checked every
option, bound the socket (a port in use is one line, once) and migrated the schema; each child
forked from it opens its own database threads and connections (SQLite: the same WAL file under its
busy timeout; PostgreSQL: a pool of its own) and serves the shared socket, the kernel spreading the
connections. Nothing lives only in a worker's memory, so a worker that dies (even SIGKILL) is simply
started again; SIGTERM/SIGINT to the parent stops every worker gracefully, then the parent exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

log = logging.getLogger("cbr_agent.controlplane.server")

#: a worker that dies sooner than this after starting is restarted only after this long
RESTART_BACKOFF = 1.0


def _fork(run: Callable[[], int]) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)  # the worker's server installs its own handlers
        code = run()
    except BaseException:  # a worker's failure ends the worker, never runs the parent's code
        log.exception("server worker failed")
    finally:
        os._exit(code)
    return 0  # pragma: no cover - unreachable


def supervise(workers: int, run: Callable[[], int]) -> int:
    """Fork ``workers`` processes running ``run()``; restart any that dies until asked to stop."""
    stopping = False
    children: dict[int, float] = {}

    def stop(sig: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(workers):
            children[_fork(run)] = time.monotonic()
        log.info("control plane: %d worker processes (%s)", workers, ", ".join(map(str, children)))
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
                continue
            started = children.pop(pid, None)
            if started is None or stopping:
                continue
            log.warning("server worker %d ended (%s); starting another", pid,
                        f"signal {-os.waitstatus_to_exitcode(status)}" if os.WIFSIGNALED(status)
                        else f"exit {os.waitstatus_to_exitcode(status)}")
            if time.monotonic() - started < RESTART_BACKOFF:
                time.sleep(RESTART_BACKOFF)
            if not stopping:
                children[_fork(run)] = time.monotonic()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("control plane stopped")
    return 0
