"""The daemon's filesystem-event journal: which directories (and entries) changed since the last backup.

While ``cbr-agent run`` runs, a watchdog observer (inotify on Linux, the platform's observer elsewhere)
watches every backup path; each event marks a directory dirty and names the entry it was about. A
scheduled backup takes the dirty set at its start (events that arrive during the backup go to the next
one: a file changed while it is being backed up is looked at again next time) and the engine looks only
at the entries named in those directories (it does not even list them: the entries that came or went are
named too), and reuses the parent snapshot's nodes and trees for the rest
(:mod:`cbr_agent.backup.changehint`).

The journal is a hint, never the truth. It has nothing to say (the backup walks everything) after a
daemon start, for a path added or whose excludes changed, and once every ``full_scan_interval`` seconds
(what the kernel never reports: a hard link changed through a path outside the backup paths, a file
system that does not deliver events, such as NFS changed from another host). It gives up on a subtree,
which is then walked fully, when the kernel's event queue overflowed, when a mount point appears or goes
away below it, and, for as long as the daemon runs, when the inotify watch limit left it unwatched.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cbr_agent.backup.changehint import DirtyDirs

log = logging.getLogger(__name__)

#: what to tell someone whose paths hold more directories than inotify may watch
WATCH_LIMIT_HINT = ("inotify watch limit reached: raise fs.inotify.max_user_watches "
                    "(e.g. sysctl fs.inotify.max_user_watches=1048576) and restart the daemon")
#: the logger of watchdog's inotify emitter, which says (and carries on) when a watch cannot be added
_WATCHDOG_INOTIFY_LOGGER = "watchdog.observers.inotify"
MOUNTINFO = "/proc/self/mountinfo"


@dataclass
class _Taken:
    """What one backup took from the journal: given back if it fails."""

    dirty: set[str]
    degraded: set[str]
    started: float
    full: bool
    names: dict[str, set[str]]


@dataclass
class _Root:
    path: str
    excludes: tuple[str, ...]
    watch: Any = None
    limited: set[str] = field(default_factory=set)   # subtrees left unwatched
    gone: bool = False                               # deleted or moved away: its watch ended
    pending: bool = True                             # its watches are still being set up


class Journal:
    """Thread-safe: events arrive on the observer's thread, backups take the set on the scheduler's,
    the path list changes on the heartbeat thread."""

    def __init__(self, full_scan_interval: float, *, clock: Callable[[], float] = time.monotonic,
                 observer_factory: Callable[[], Any] | None = None,
                 on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.full_scan_interval = full_scan_interval
        self._clock = clock
        self._observer_factory = observer_factory or _default_observer
        self._on_change = on_change
        self._lock = threading.Lock()
        self._roots: dict[str, _Root] = {}
        self._dirty: set[str] = set()
        self._degraded: set[str] = set()
        #: per dirty directory, the entries seen changing (an entry not named here is unchanged)
        self._names: dict[str, set[str]] = {}
        self._base: str | None = None       # the snapshot the dirty set counts from
        self._last_full: float | None = None
        self._taken: _Taken | None = None
        self._mounts = _mount_points()
        self._said_limit = False
        self._observer: Any = None
        self._log_hook = _WatchFailures(self)
        self._work: queue.Queue[Any] = queue.Queue()
        self._busy = 0                      # watch requests not yet done by the worker
        self._ready = threading.Event()     # set while there are none
        self._ready.set()
        self._thread = threading.Thread(target=self._watcher, name="journal-watch", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        watchdog_log = logging.getLogger(_WATCHDOG_INOTIFY_LOGGER)
        watchdog_log.addFilter(self._log_hook)
        if watchdog_log.getEffectiveLevel() > logging.WARNING:  # log_level = error must not hide it
            watchdog_log.setLevel(logging.WARNING)
        try:
            import watchdog.events

            if not hasattr(watchdog.events, "EventsLostEvent"):  # it could not tell us of an overflow
                raise RuntimeError("the installed watchdog does not report lost events; upgrade it")
            self._observer = self._observer_factory()
            self._observer.start()
        except Exception as exc:  # no observer on this platform: every backup walks everything
            log.warning("file change journal unavailable (%s); every backup scans all files", exc)
            self._observer = None
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        logging.getLogger(_WATCHDOG_INOTIFY_LOGGER).removeFilter(self._log_hook)
        self._work.put(None)
        if self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.stop()
                self._observer.join(timeout)

    def watch(self, roots: Iterable[tuple[str, Sequence[str]]], *, wait: bool = False) -> None:
        """Watch exactly these ``(path, excludes)`` (normalized); a path added or whose excludes changed
        is walked fully at the next backup, and until its watches are in place. The watches are set up
        in the journal's own thread; ``wait`` waits for that."""
        wanted = {path: tuple(excludes) for path, excludes in roots}
        added: list[_Root] = []
        with self._lock:  # the observer's thread reads the roots; (un)scheduling happens outside
            removed = [self._roots.pop(p) for p in [p for p in self._roots if p not in wanted]]
            for path, excludes in wanted.items():
                known = self._roots.get(path)
                if known is not None and known.excludes == excludes:
                    continue
                self._degraded.add(path)
                if known is not None:
                    known.excludes = excludes
                    continue
                root = self._roots[path] = _Root(path, excludes)
                added.append(root)
        done = threading.Event()
        with self._lock:
            self._busy += 1
            self._ready.clear()
        self._work.put((removed, added, done))
        if wait:
            done.wait()
        self._changed()

    def _watcher(self) -> None:
        """Sets watches up in its own thread: on a large tree that takes seconds (one inotify watch per
        directory), and neither the daemon's start nor its heartbeat may wait for it."""
        while True:
            work = self._work.get()
            if work is None:
                return
            removed, added, done = work
            try:
                for root in removed:
                    self._unschedule(root)
                for root in added:
                    self._schedule(root)
            except Exception:  # never leave a path trusted without its watch
                log.exception("file change journal: cannot set watches up")
                for root in added:
                    root.gone = True
            finally:
                with self._lock:
                    for root in added:
                        root.pending = False
                    self._busy -= 1
                    if not self._busy:
                        self._ready.set()
                done.set()

    def wait_ready(self, cancel: threading.Event | None = None) -> None:
        """Wait until the watches asked for are in place (a backup taken before would count nothing
        from them: it and the next one would both scan fully); ``cancel`` ends the wait."""
        while not self._ready.wait(0.2):
            if cancel is not None and cancel.is_set():
                return

    def _schedule(self, root: _Root) -> None:
        if self._observer is None:
            root.gone = True
            return
        from watchdog.events import (
            DirAttribEvent,
            DirCreatedEvent,
            DirDeletedEvent,
            DirModifiedEvent,
            DirMovedEvent,
            EventsLostEvent,
            FileAttribEvent,
            FileClosedEvent,
            FileCreatedEvent,
            FileDeletedEvent,
            FileModifiedEvent,
            FileMovedEvent,
        )
        wanted = [DirAttribEvent, DirCreatedEvent, DirDeletedEvent, DirModifiedEvent, DirMovedEvent,
                  EventsLostEvent, FileAttribEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent,
                  FileModifiedEvent, FileMovedEvent]  # no open/close-nowrite: the backup's own reads
        try:
            root.watch = self._observer.schedule(_Handler(self), root.path, recursive=True,
                                                 event_filter=wanted)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EMFILE):
                self.on_watch_limit(root.path)
            else:  # not there (yet), or not a directory: walked fully until it can be watched
                log.debug("cannot watch %s: %s", root.path, exc)
                root.gone = True
        with self._lock:  # what changed before the watches were complete is unknown
            self._degraded.add(root.path)

    def _unschedule(self, root: _Root) -> None:
        if self._observer is not None and root.watch is not None:
            with contextlib.suppress(Exception):
                self._observer.unschedule(root.watch)

    # -- events ----------------------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        kind = event.event_type
        if kind == "events_lost":
            self.on_overflow(_text(event.src_path))
            return
        src = _text(event.src_path)
        if kind in ("deleted", "moved") and src in self._roots:
            self._root_gone(src)
            return
        with self._lock:
            self._mark(src, event.is_directory, kind)
            if kind == "moved" and event.dest_path:
                self._mark(_text(event.dest_path), event.is_directory, "created")

    def _mark(self, path: str, is_dir: bool, kind: str) -> None:
        # a file's change (content, attributes, name) makes its directory dirty; a directory's own
        # change (entries, attributes) makes it dirty, and its parent then looks at it again (BELOW).
        # A directory that came or went changes its parent's entries; one that came from elsewhere
        # has no previous tree worth trusting: walked fully.
        if not is_dir:
            self._dirty_entry(path)
            return
        self._dirty.add(path)
        if kind in ("created", "deleted", "moved"):
            self._dirty_entry(path)
        if kind == "created":
            self._degraded.add(path)

    def _dirty_entry(self, path: str) -> None:
        """The entry ``path`` changed: its directory is dirty, and names it."""
        parent, name = os.path.split(path)
        self._dirty.add(parent)
        self._names.setdefault(parent, set()).add(name)

    def _root_gone(self, path: str) -> None:
        """A backup path itself was deleted or moved away: its watch ends with it. Walked fully until
        it is there again and watched anew (see :meth:`take`)."""
        with self._lock:
            root = self._roots.get(path)
            if root is not None:
                root.gone = True
                self._degraded.add(path)
        log.info("file change journal: %s went away; it is scanned fully until it is back", path)

    def _rewatch(self) -> None:
        for root in list(self._roots.values()):
            if root.gone and os.path.isdir(root.path):
                self._unschedule(root)
                root.gone = False
                self._schedule(root)

    def on_overflow(self, path: str | None = None) -> None:
        """The kernel dropped events (IN_Q_OVERFLOW): the backup path holding ``path`` (every path if
        None or unknown) is walked fully at the next backup."""
        with self._lock:
            roots = [r for r in self._roots if path is not None and _under(path, r)] or list(self._roots)
            self._degraded.update(roots)
        log.warning("file change journal: events were lost (event queue overflow); the next backup "
                    "scans %s fully", ", ".join(roots) or "every path")

    def on_watch_limit(self, path: str) -> None:
        """``path`` could not be watched (the watch limit): its subtree is walked fully at every backup
        while the daemon runs; said once in the log and kept in ``status``."""
        with self._lock:
            for root in self._roots.values():
                if _under(path, root.path):
                    root.limited.add(path)
            first, self._said_limit = not self._said_limit, True
        if first:
            log.warning("file change journal: cannot watch %s (%s); directories left unwatched are scanned "
                        "fully at every backup", path, WATCH_LIMIT_HINT)
        self._changed()

    def rescan_all(self) -> None:
        """The next backup walks everything (a setting that changes what is backed up changed)."""
        with self._lock:
            self._last_full = None

    # -- backups -----------------------------------------------------------------------------------

    def take(self) -> DirtyDirs:
        """At a backup's start: what changed so far (and a fresh, empty set for what comes next)."""
        self._check_mounts()
        self._rewatch()
        now = self._clock()
        with self._lock:
            if self._taken is not None:  # never finished nor failed: still to back up
                self._give_back(self._taken)
            due = self._last_full is None or now - self._last_full >= self.full_scan_interval
            taken = _Taken(self._dirty, self._degraded, now, due or self._observer is None, self._names)
            self._dirty, self._degraded, self._names = set(), set(), {}
            self._taken = taken
            limited = {p for r in self._roots.values() for p in r.limited}
            limited.update(r.path for r in self._roots.values() if r.gone or r.pending)
            base = None if taken.full else self._base
            # every entry an event was about is named, the ones that came or went too (a lost event
            # degraded its subtree): a dirty directory that names none changed only its own attributes
            names = {path: taken.names.get(path, ()) for path in taken.dirty}
            return DirtyDirs(base, dirty=taken.dirty, degraded=taken.degraded | limited, names=names,
                             names_complete=True)

    def finished(self, snapshot_id: str | None, scan: str | None, warnings: Sequence[str] = ()) -> None:
        """The backup taken last wrote ``snapshot_id``: later changes count from it."""
        with self._lock:
            taken, self._taken = self._taken, None
            if taken is None or not snapshot_id:
                if taken is not None:
                    self._give_back(taken)
                return
            self._base = snapshot_id
            if scan == "full":
                self._last_full = taken.started
            for text in warnings:  # a file that could not be read is looked at again next time
                path = str(text).split(": ", 1)[0]
                if path.startswith("/"):
                    self._dirty_entry(path)
                    self._dirty.add(path)

    def failed(self) -> None:
        """The backup taken last wrote no snapshot: its changes are still to be backed up."""
        with self._lock:
            taken, self._taken = self._taken, None
            if taken is not None:
                self._give_back(taken)

    def _give_back(self, taken: _Taken) -> None:
        self._dirty |= taken.dirty
        self._degraded |= taken.degraded
        for path, names in taken.names.items():
            self._names.setdefault(path, set()).update(names)

    def _check_mounts(self) -> None:
        """A file system mounted or unmounted below a backup path: its parent walked fully, and the
        mount point at every backup (no watch covers what was mounted after the watch was set)."""
        mounts = _mount_points()
        changed = mounts ^ self._mounts
        self._mounts = mounts
        if not changed:
            return
        with self._lock:
            for point in changed:
                for root in self._roots.values():
                    if _under(point, root.path):
                        root.limited.add(point)
                        self._degraded.add(os.path.dirname(point) if point != root.path else point)

    # -- status --------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            limited = sorted(p for r in self._roots.values() for p in r.limited)
            return {"watching": self._observer is not None, "paths": len(self._roots),
                    "full_scan_below": limited, "note": WATCH_LIMIT_HINT if self._said_limit else None,
                    "full_scan_interval": self.full_scan_interval}

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.status())


class _Handler:
    """watchdog's handler interface (``dispatch``), forwarding to the journal."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def dispatch(self, event: Any) -> None:
        try:
            self.journal.on_event(event)
        except Exception:  # an event we cannot place: the next backup must not trust the journal
            log.debug("file change journal: event not understood: %r", event, exc_info=True)
            self.journal.on_overflow(None)


class _WatchFailures(logging.Filter):
    """watchdog logs, and carries on, when a directory below a watched path cannot be watched (the
    watch limit): that is how the journal learns which subtree is unwatched. Its line, once per
    directory (thousands on a large tree), is dropped: the journal says it once."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Unable to watch") and record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            self.journal.on_watch_limit(_text(args[0]))
            return False
        return True


def _default_observer() -> Any:
    from watchdog.observers import Observer

    return Observer()


def _text(path: Any) -> str:
    return os.fsdecode(path) if isinstance(path, bytes) else str(path)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _mount_points() -> set[str]:
    """The mount points the kernel lists (Linux); empty elsewhere (no mount detection there)."""
    try:
        with open(MOUNTINFO, "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return set()
    points = set()
    for line in lines:
        fields = line.split(b" ")
        if len(fields) > 4:  # octal escapes for space, tab, newline and backslash
            points.add(os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8) & 0xFF]), fields[4])))
    return points


_OCTAL = re.compile(rb"\\([0-7]{3})")


def inotify_watches(pid: int | str = "self") -> int:
    """The inotify watches a process holds (Linux; 0 elsewhere), counted from /proc/PID/fdinfo."""
    count = 0
    base = f"/proc/{pid}/fdinfo"
    with contextlib.suppress(OSError):
        for fd in os.listdir(base):
            with contextlib.suppress(OSError), open(os.path.join(base, fd), encoding="ascii",
                                                    errors="replace") as fh:
                count += sum(1 for line in fh if line.startswith("inotify wd:"))
    return count
