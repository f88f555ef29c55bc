"""The daemon's file change journal with a real watchdog observer on real directories."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cbr_agent.agent import journal as journal_mod
from cbr_agent.agent.journal import WATCH_LIMIT_HINT, Journal, inotify_watches
from cbr_agent.backup.changehint import BELOW, CLEAN, DEGRADED, DIRTY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settle(journal: Journal, path: str, timeout: float = 5.0) -> None:
    """Wait until the observer delivered an event for directory ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with journal._lock:
            if path in journal._dirty:
                time.sleep(0.2)  # the write's trailing events (close after modify) too
                return
        time.sleep(0.02)
    raise AssertionError(f"no event for {path} within {timeout} s")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for sub in ("a/x", "a/y", "b"):
        (root / sub).mkdir(parents=True)
        (root / sub / "f").write_bytes(b"content")
    return root


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def journal(tree: Path, clock: Clock) -> Iterator[Journal]:
    j = Journal(3600.0, clock=clock)
    j.start()
    j.watch([(str(tree), ())], wait=True)
    yield j
    j.stop()


def baseline(journal: Journal, snapshot: str = "snap-1") -> None:
    """One full backup done: the journal counts from ``snapshot``."""
    hint = journal.take()
    assert hint.base_snapshot is None  # the first backup after a start is a full scan
    journal.finished(snapshot, "full")


def test_a_change_marks_its_directory_and_the_hint_counts_from_the_last_snapshot(journal, tree) -> None:
    baseline(journal)
    (tree / "a" / "x" / "f").write_bytes(b"changed")
    settle(journal, str(tree / "a" / "x"))
    hint = journal.take()
    assert hint.base_snapshot == "snap-1"
    assert hint.state(str(tree / "a" / "x")) == DIRTY
    assert hint.state(str(tree / "a")) == BELOW and hint.state(str(tree)) == BELOW
    assert hint.state(str(tree / "a" / "y")) == CLEAN and hint.state(str(tree / "b")) == CLEAN
    assert not hint.full(str(tree))


def test_changes_during_a_backup_stay_for_the_next_and_a_failed_backup_gives_its_set_back(journal,
                                                                                          tree) -> None:
    baseline(journal)
    (tree / "b" / "f").write_bytes(b"before the backup")
    settle(journal, str(tree / "b"))
    first = journal.take()
    assert first.state(str(tree / "b")) == DIRTY
    (tree / "a" / "y" / "f").write_bytes(b"while the backup runs")
    settle(journal, str(tree / "a" / "y"))
    journal.finished("snap-2", "journal")
    second = journal.take()
    assert second.base_snapshot == "snap-2"
    assert second.state(str(tree / "a" / "y")) == DIRTY, "a file changed during a backup is looked at again"
    assert second.state(str(tree / "a" / "x")) == CLEAN  # (b may still see its write's last events)
    journal.failed()  # no snapshot: its changes are still to back up
    third = journal.take()
    assert third.base_snapshot == "snap-2" and third.state(str(tree / "a" / "y")) == DIRTY


def test_the_hint_names_the_entries_that_changed_in_a_dirty_directory(journal, tree) -> None:
    baseline(journal)
    d = tree / "a" / "x"
    (d / "g").write_bytes(b"other")
    (d / "h").write_bytes(b"third")
    settle(journal, str(d))
    journal.finished("snap-2", "journal")
    journal.take()
    journal.finished("snap-3", "journal")  # g and h are in snap-3 now
    (d / "f").write_bytes(b"changed")          # content
    os.chmod(d / "g", 0o600)                   # metadata only
    (d / "new").write_bytes(b"new")            # came
    (d / "h").unlink()                         # went
    os.rename(d / "new", d / "renamed")        # renamed within the directory
    (tree / "a" / "sub").mkdir()               # a directory came: its parent names it
    settle(journal, str(d))
    settle(journal, str(tree / "a"))
    hint = journal.take()
    assert hint.state(str(d)) == DIRTY
    assert hint.changed_names(str(d)) == {"f", "g", "new", "h", "renamed"}
    assert "sub" in hint.changed_names(str(tree / "a"))
    assert hint.changed_names(str(tree / "b")) is None  # not dirty: nothing to say


def test_a_failed_backup_gives_its_names_back_and_warned_files_are_named_again(journal, tree) -> None:
    baseline(journal)
    (tree / "b" / "f").write_bytes(b"changed")
    settle(journal, str(tree / "b"))
    assert journal.take().changed_names(str(tree / "b")) == {"f"}
    journal.failed()
    hint = journal.take()
    assert hint.changed_names(str(tree / "b")) == {"f"}, "a failed backup's names are looked at again"
    journal.finished("snap-2", "journal", [f"{tree / 'a' / 'y' / 'f'}: permission denied"])
    again = journal.take()
    assert again.state(str(tree / "a" / "y")) == DIRTY
    assert "f" in again.changed_names(str(tree / "a" / "y"))


def test_new_directory_is_walked_fully(journal, tree) -> None:
    baseline(journal)
    (tree / "a" / "new" / "deep").mkdir(parents=True)
    settle(journal, str(tree / "a" / "new"))
    hint = journal.take()
    assert hint.state(str(tree / "a" / "new")) == DEGRADED
    assert hint.state(str(tree / "a")) == DIRTY


def test_overflow_makes_the_path_a_full_scan(journal, tree) -> None:
    baseline(journal)
    journal.on_overflow(str(tree))
    hint = journal.take()
    assert hint.full(str(tree))
    journal.finished("snap-2", "journal")
    assert not journal.take().full(str(tree)), "only the next backup"


def test_watch_limit_is_said_once_kept_in_status_and_scanned_fully_every_time(journal, tree, caplog) -> None:
    baseline(journal)
    with caplog.at_level(logging.WARNING):
        # what watchdog logs when inotify_add_watch fails with ENOSPC below a watched path
        logging.getLogger("watchdog.observers.inotify").warning(
            "Unable to watch %r: %s", str(tree / "a"), OSError(28, "inotify watch limit reached"))
        journal.on_watch_limit(str(tree / "b"))
    said = [r for r in caplog.records if "max_user_watches" in r.getMessage()]
    assert len(said) == 1
    assert not [r for r in caplog.records if r.name.startswith("watchdog")], "watchdog's line per directory"
    status = journal.status()
    assert status["full_scan_below"] == [str(tree / "a"), str(tree / "b")]
    assert status["note"] == WATCH_LIMIT_HINT
    for snap in ("snap-2", "snap-3"):
        hint = journal.take()
        assert hint.state(str(tree / "a")) == DEGRADED and hint.state(str(tree / "b")) == DEGRADED
        journal.finished(snap, "journal")


def test_full_scan_interval_forces_a_full_scan(journal, tree, clock) -> None:
    baseline(journal)
    clock.now += 3599
    assert journal.take().base_snapshot == "snap-1"
    journal.finished("snap-2", "journal")
    clock.now += 2
    assert journal.take().base_snapshot is None, "a day (here an hour) since the last full scan"
    journal.finished("snap-3", "full")
    clock.now += 1
    assert journal.take().base_snapshot == "snap-3"


def test_path_added_or_excludes_changed_is_a_full_scan(journal, tree, tmp_path) -> None:
    baseline(journal)
    other = tmp_path / "other"
    other.mkdir()
    journal.watch([(str(tree), (str(tree / "b"),)), (str(other), ())], wait=True)
    hint = journal.take()
    assert hint.full(str(tree)) and hint.full(str(other))
    journal.finished("snap-2", "journal")
    hint = journal.take()
    assert not hint.full(str(tree)) and not hint.full(str(other))


def test_a_mount_point_appearing_scans_its_parent_fully(tree, clock, tmp_path, monkeypatch) -> None:
    mountinfo = tmp_path / "mountinfo"  # the kernel's mount table, as it would read
    line = "22 1 0:21 / {} rw - tmpfs tmpfs rw\n"
    mountinfo.write_text(line.format("/"))
    monkeypatch.setattr(journal_mod, "MOUNTINFO", str(mountinfo))
    j = Journal(3600.0, clock=clock)
    j.start()
    try:
        j.watch([(str(tree), ())], wait=True)
        baseline(j)
        point = str(tree / "a" / "with space")
        mountinfo.write_text(line.format("/") + line.format(point.replace(" ", "\\040")))
        hint = j.take()
        assert hint.state(str(tree / "a")) == DEGRADED and hint.state(point) == DEGRADED
    finally:
        j.stop()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fdinfo"), reason="inotify watches counted on Linux")
def test_watches_are_one_per_directory(journal, tree) -> None:
    # data, a, a/x, a/y, b (this process may hold other inotify watches: count the difference)
    assert inotify_watches() >= 5


def test_rescan_all_makes_the_next_backup_full(journal, tree) -> None:
    baseline(journal)
    journal.rescan_all()
    assert journal.take().base_snapshot is None


def test_a_backup_path_deleted_and_recreated_is_watched_again(journal, tree) -> None:
    import shutil

    baseline(journal)
    shutil.rmtree(tree)
    deadline = time.monotonic() + 5
    while not journal._roots[str(tree)].gone:
        assert time.monotonic() < deadline, "no event for the deleted backup path"
        time.sleep(0.02)
    (tree / "c").mkdir(parents=True)
    hint = journal.take()  # back: watched anew, but what happened meanwhile is unknown
    assert hint.full(str(tree))
    journal.finished("snap-2", "journal")
    (tree / "c" / "f").write_bytes(b"seen by the new watch")
    settle(journal, str(tree / "c"))
    hint = journal.take()
    assert not hint.full(str(tree)) and hint.state(str(tree / "c")) == DIRTY


def test_a_path_is_scanned_fully_until_its_watches_are_in_place(tree, clock) -> None:
    import threading

    from watchdog.observers import Observer

    gate = threading.Event()

    class SlowObserver(Observer):  # a tree so large that setting the watches up takes a while
        def schedule(self, *args, **kwargs):
            assert gate.wait(5)
            return super().schedule(*args, **kwargs)

    j = Journal(3600.0, clock=clock, observer_factory=SlowObserver)
    j.start()
    try:
        j.watch([(str(tree), ())])  # returns at once: the daemon's start does not wait for it
        baseline(j)
        assert j.take().full(str(tree)), "not watched yet: nothing can be trusted"
        j.finished("snap-2", "journal")
        stop = threading.Event()
        stop.set()
        j.wait_ready(stop)  # a stopping daemon does not wait for the watches
        gate.set()
        j.wait_ready()  # what the scheduler does before a backup
        assert j.take().full(str(tree)), "changes before the watches were complete are unknown"
        j.finished("snap-3", "journal")
        assert not j.take().full(str(tree))
    finally:
        j.stop()
