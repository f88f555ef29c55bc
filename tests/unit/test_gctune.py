"""The collector is kept quiet for the time of a backup, and put back as it was afterwards."""

from __future__ import annotations

import gc
import threading
import weakref

from cbr_agent import gctune
from cbr_agent.gctune import BACKUP_THRESHOLD, quiet_gc


def test_during_a_backup_what_existed_is_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    old = [[i] for i in range(1000)]  # containers made before the backup
    with quiet_gc():
        assert gc.get_freeze_count() >= len(old)
        assert gc.get_threshold() == (BACKUP_THRESHOLD, *before[1:])
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_garbage_frozen_during_a_backup_is_collected_after_it() -> None:
    class Node:
        other: Node

    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = [False]
    weakref.finalize(a, gone.__setitem__, 0, True)
    with quiet_gc():
        del a, b
        gc.collect()
        assert not gone[0]  # it existed before the backup: frozen, never scanned
    gc.collect()
    assert gone[0]


def test_concurrent_backups_share_one_quiet_period() -> None:
    before = gc.get_threshold()
    inside, release = threading.Event(), threading.Event()

    def other_backup() -> None:
        with quiet_gc():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other_backup)
    with quiet_gc():
        t.start()
        assert inside.wait(10)
    # this one ended first: the other still runs quiet
    assert gc.get_threshold()[0] == BACKUP_THRESHOLD and gctune._active == 1
    release.set()
    t.join(10)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_an_error_in_the_backup_still_puts_the_collector_back() -> None:
    before = gc.get_threshold()
    try:
        with quiet_gc():
            raise RuntimeError("disk full")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
