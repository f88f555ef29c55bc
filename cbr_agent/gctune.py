"""Python's cyclic garbage collector kept out of a backup's way.

A backup allocates millions of small containers (tree nodes, stat results, listings), almost none of
them in reference cycles, and the collector runs after every 700 net allocations, scanning young objects
each time and, every hundredth time, every object the process holds. In the agent's daemon that heap is
large and long-lived (the change journal, the previous backups' leftovers), so those full passes cost a
backup more the longer the daemon runs. During a backup the objects that existed before it are frozen
(:func:`gc.freeze`: never scanned, never collected) and young collections run 20 times less often;
both are undone when the last backup running ends, and cycles made meanwhile are collected then.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

#: gen-0 threshold during a backup (Python's default is 700)
BACKUP_THRESHOLD = 14_000

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Freeze what exists and collect young objects less often, for the time of the ``with`` block
    (nested or concurrent blocks share one such period)."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(BACKUP_THRESHOLD, *_saved[1:])
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
