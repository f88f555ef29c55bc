"""One backup run, as the CLI and the daemon start it: repository, lock, parent, pipeline, snapshot.

Write order: data blobs and trees through one writer, flushed (packs, then their index), then the
snapshot, then the files cache rows. A run that stops early (cancel, repository error) writes no
snapshot; what reached the repository is reused by the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, NamedTuple

from cbr_agent.backup.archiver import Archiver, ArchiverOptions, BackupStats, Root
from cbr_agent.backup.changehint import ChangeHint, usable_hint
from cbr_agent.backup.filescache import FilesCache
from cbr_agent.backup.keptlistings import KeptListings
from cbr_agent.backup.prescan import Prescan
from cbr_agent.config import Settings
from cbr_agent.errors import BackupError, UsageError
from cbr_agent.gctune import quiet_gc
from cbr_agent.memtune import cap_malloc_arenas
from cbr_agent.pathrules import ExcludeMatcher, PathRuleError, normalize_exclude, normalize_path
from cbr_agent.procpool import helper_count
from cbr_agent.progress import refresh_seconds
from cbr_agent.repoaccess.configured import open_repository
from cbr_agent.repository.snapshot import Snapshot
from cbr_agent.repository.writer import DryRunWriter

log = logging.getLogger(__name__)

#: how often a running backup flushes the writer and commits files cache rows (what a killed run
#: leaves for the next one to reuse); CBR_AGENT_TEST_CHECKPOINT_SECONDS overrides it for crash tests
CHECKPOINT_SECONDS = 60.0


def checkpoint_seconds() -> float:
    try:
        return float(os.environ.get("CBR_AGENT_TEST_CHECKPOINT_SECONDS", CHECKPOINT_SECONDS))
    except ValueError:
        return CHECKPOINT_SECONDS


@dataclass
class BackupSummary:
    snapshot_id: str | None
    parent: str | None
    paths: list[str]
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    others: int = 0
    bytes_read: int = 0
    bytes_total: int = 0
    bytes_new: int = 0            # size of the new files, of the changed ones, of the unchanged ones
    bytes_changed: int = 0
    bytes_unchanged: int = 0
    bytes_added: int = 0
    bytes_stored: int = 0
    blobs_new: int = 0
    dirs_scanned: int = 0       # directories looked into (listed, or only their entries the journal named)
    dirs_reused: int = 0        # subtrees reused from the parent unopened (the daemon's journal vouched)
    scan: str = "full"          # "journal": the daemon's change journal led the walk; "full": every dir
    duration: float = 0.0
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ProgressInfo:
    """Handed to the ``progress`` callback every :func:`cbr_agent.progress.refresh_seconds`, and once at
    the end (``finished``)."""

    files: int                   # regular files handled so far (read or found unchanged)
    bytes_done: int              # their bytes
    bytes_read: int
    elapsed: float
    bytes_expected: int | None   # the pre-scan's total once it is done, else the parent snapshot's size
    finished: bool = False
    scanned_files: int = 0       # what the pre-scan beside the backup has counted so far ...
    scanned_bytes: int = 0
    scan_done: bool = False      # ... and whether that is the total


class BackupRoot(NamedTuple):
    """One backup path, normalized, with its excludes (normalized too)."""

    path: str
    excludes: tuple[str, ...]


def normalize_roots(paths: Sequence[Any]) -> list[BackupRoot]:
    """The backup paths, normalized and sorted; accepts AgentPath objects, (path, excludes) or str."""
    out: dict[str, tuple[str, ...]] = {}
    for item in paths:
        excludes: tuple[str, ...]
        if isinstance(item, str):
            raw, excludes = item, ()
        elif isinstance(item, tuple):
            raw, given = item
            excludes = tuple(given)
        else:
            raw, excludes = item.dir_path, tuple(item.excludes)
        try:
            path = normalize_path(raw)
            normal = tuple(normalize_exclude(path, e) for e in excludes)
        except PathRuleError as exc:
            raise UsageError(str(exc)) from None
        out[path] = out.get(path, ()) + normal
    if not out:
        raise UsageError("no backup paths given and none configured",
                         hint="add one with 'cbr-agent path add PATH' or name it on the command line")
    return [BackupRoot(path, excludes) for path, excludes in sorted(out.items())]


def find_parent(repo: Any, host: str, paths: list[str]) -> Snapshot | None:
    for snap in reversed(repo.list_snapshots()):
        if snap.host == host and sorted(snap.paths) == sorted(paths):
            return snap
    return None


def _stored_agent_id(settings: Settings) -> str | None:
    """The agent id the daemon keeps in the state dir (read as data: the engine imports no agent code)."""
    try:
        with open(settings.state_dir / "identity.json", encoding="utf-8") as fh:
            value = json.load(fh).get("agent_id")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def _open_cache(settings: Settings, repo_id: str) -> FilesCache | None:
    try:
        return FilesCache(settings.state_dir / "filescache.db", repo_id)
    except Exception as exc:  # the cache only saves time; a backup without it is still right
        log.warning("files cache unavailable (%s); every file is compared with the parent snapshot", exc)
        return None


@dataclass(frozen=True)
class RunOptions:
    """How :func:`backup_paths` runs, beside the settings and the paths (all optional)."""

    #: set from another thread: the run stops promptly (Cancelled) and writes no snapshot
    cancel: threading.Event | None = None
    #: called every :func:`cbr_agent.progress.refresh_seconds` and once at the end
    progress: Callable[[ProgressInfo], None] | None = None
    #: read and hash everything, store nothing (no snapshot, no files cache rows)
    dry_run: bool = False
    #: recorded in the snapshot; default: the configured one, else the daemon's stored identity
    agent_id: str | None = None
    #: an open repository to use (the daemon keeps one open); default: open the configured one
    repo: Any = None
    #: seconds to wait for a repository locked by a prune before RepositoryLocked
    lock_wait: float = 0.0
    #: tags of the new snapshot
    tags: Sequence[str] = ()
    #: the daemon's journal: the directories changed since the snapshot it counts from (used only when
    #: that snapshot is the parent, else every directory is walked)
    changes: ChangeHint | None = None
    #: the daemon's listings of the directories its journal-led backups edited (of this repository only)
    listings: KeptListings | None = None


@dataclass(frozen=True)
class _Run:
    """What one run knows before it walks: where it writes, what it backs up, what it counts from."""

    settings: Settings
    repo: Any
    roots: list[BackupRoot]
    missing: list[str]          # backup paths that do not exist (a warning each)
    host: str
    parent: Snapshot | None
    cache: FilesCache | None
    agent_id: str | None
    start_time: datetime        # the snapshot's time
    started: float              # monotonic, for durations and progress

    @property
    def parent_id(self) -> str | None:
        return self.parent.id if self.parent is not None else None


def backup_paths(settings: Settings, paths: Sequence[Any],
                 options: RunOptions | None = None) -> BackupSummary:
    """Back up ``paths`` (``AgentPath`` objects, ``(path, excludes)`` pairs or strings) into the
    configured repository and return what was done. Per-file problems are in ``.warnings``;
    repository problems raise (no snapshot written); see :class:`RunOptions` for the rest."""
    options = options or RunOptions()
    started = time.monotonic()
    start_time = datetime.now(timezone.utc)
    cap_malloc_arenas()
    roots = normalize_roots(paths)
    missing = [r.path for r in roots if not os.path.lexists(r.path)]
    if len(missing) == len(roots):
        raise BackupError(f"nothing to back up: {', '.join(missing)} "
                          f"{'does' if len(missing) == 1 else 'do'} not exist")
    repo = options.repo
    if repo is None:
        repo = open_repository(settings, create_default=not options.dry_run)
    host = socket.gethostname()
    with quiet_gc(), repo.lock(exclusive=False, wait=options.lock_wait, cancel=options.cancel):
        parent = find_parent(repo, host, [r.path for r in roots])
        cache = None if options.dry_run else _open_cache(settings, repo.id)
        try:
            run = _Run(settings, repo, roots, missing, host, parent, cache,
                       options.agent_id or settings.agent_id or _stored_agent_id(settings),
                       start_time, started)
            return _run(run, options)
        finally:
            if cache is not None:
                cache.close()


def _run(run: _Run, options: RunOptions) -> BackupSummary:
    parent, cache, dry_run, progress = run.parent, run.cache, options.dry_run, options.progress
    level = run.settings.compression  # "auto": the repository's own
    writer_cm = contextlib.nullcontext(DryRunWriter(run.repo)) if dry_run else \
        run.repo.writer(compression_level=None if level == "auto" else int(level))
    expected = (parent.summary or {}).get("bytes_total") if parent is not None else None
    ticker: _Ticker | None = None
    with writer_cm as writer:
        def checkpoint() -> None:
            if cache is None:
                return
            staged = cache.take_staged()
            writer.flush()
            cache.commit(*staged)

        archiver = Archiver(run.repo, writer, _archiver_options(run, options, checkpoint))
        walk_roots = [Root(r.path, ExcludeMatcher(r.path, r.excludes)) for r in run.roots
                      if r.path not in run.missing]
        if progress is not None:
            scan = Prescan([(r.path, r.matcher) for r in walk_roots],
                           one_file_system=run.settings.one_file_system)
            ticker = _Ticker(archiver.stats, progress, run.started, expected, scan)
            ticker.start()
        for path in run.missing:
            archiver.warn(f"{path}: does not exist; not backed up")
        try:
            tree = archiver.run(walk_roots)
        finally:
            if ticker is not None:
                ticker.stop()
    stats = archiver.stats
    summary = BackupSummary(snapshot_id=None, parent=run.parent_id, paths=[r.path for r in run.roots],
                            dry_run=dry_run)
    _fill(summary, stats, writer, dry_run)
    summary.scan = "journal" if archiver.journal_roots else "full"
    summary.duration = round(time.monotonic() - run.started, 3)
    if not dry_run:
        _save_snapshot(run, summary, tree, options.tags)
    summary.duration = round(time.monotonic() - run.started, 3)
    if progress is not None:
        progress(ProgressInfo(stats.files_done, stats.bytes_done, stats.bytes_read,
                              time.monotonic() - run.started, stats.bytes_total, finished=True,
                              scanned_files=stats.files_done, scanned_bytes=stats.bytes_total,
                              scan_done=True))
    return summary


def _archiver_options(run: _Run, options: RunOptions, checkpoint: Callable[[], None]) -> ArchiverOptions:
    parent = run.parent
    return ArchiverOptions(
        cache=run.cache,
        parent_tree=parent.tree if parent is not None else None,
        parent_time_ns=int(parent.time.timestamp() * 1e9) if parent is not None else 0,
        one_file_system=run.settings.one_file_system,
        helpers=helper_count(run.settings.backup_processes),
        cancel=options.cancel,
        checkpoint=None if options.dry_run else checkpoint,
        checkpoint_interval=checkpoint_seconds(),
        hint=usable_hint(options.changes, run.parent_id, run.roots,
                         parent.excludes if parent is not None else {}),
        listings=None if options.dry_run else options.listings,
    )


def _save_snapshot(run: _Run, summary: BackupSummary, tree: str, tags: Sequence[str]) -> None:
    """The snapshot, then the files cache rows (a snapshot is never missing rows it relies on)."""
    snapshot = Snapshot(
        time=run.start_time, host=run.host, agent_id=run.agent_id, paths=summary.paths,
        excludes={r.path: list(r.excludes) for r in run.roots if r.excludes}, tree=tree,
        parent=summary.parent, summary=_stored_summary(summary), tags=list(tags),
    )
    summary.snapshot_id = run.repo.save_snapshot(snapshot)
    cache = run.cache
    if cache is not None:
        try:
            cache.commit(*cache.take_staged())
            if summary.scan == "full":  # a journal-led backup sees part of the tree: it ages no row
                cache.finish()
        except Exception as exc:  # the snapshot is safe; only the next run gets slower
            log.warning("could not update the files cache: %s", exc)


# the counters a summary takes over from the run's stats as they are (bytes_unchanged is derived)
_SHARED_COUNTERS = tuple(f.name for f in fields(BackupStats)
                         if f.name in BackupSummary.__dataclass_fields__ and f.name != "warnings")


def _fill(summary: BackupSummary, stats: BackupStats, writer: Any, dry_run: bool) -> None:
    for name in _SHARED_COUNTERS:
        setattr(summary, name, getattr(stats, name))
    summary.bytes_unchanged = max(0, stats.bytes_total - stats.bytes_new - stats.bytes_changed)
    summary.warnings = list(stats.warnings)
    if dry_run:
        summary.bytes_added = writer.bytes_new
        summary.blobs_new = writer.blobs_new
    else:
        summary.bytes_added = writer.stats.bytes_new
        summary.bytes_stored = writer.stats.bytes_stored
        summary.blobs_new = writer.stats.blobs_new


def _stored_summary(summary: BackupSummary) -> dict[str, Any]:
    keys = ("files_new", "files_changed", "files_unchanged", "dirs", "others", "bytes_read",
            "bytes_total", "bytes_added", "bytes_stored", "blobs_new")
    fields = summary.to_dict()
    out = {k: fields[k] for k in keys}
    out["warnings"] = len(summary.warnings)
    out["duration"] = summary.duration
    return out


class _Ticker:
    """Calls ``progress`` every refresh_seconds() from its own thread, with the counts of the backup and
    of the pre-scan running beside it."""

    def __init__(self, stats: BackupStats, progress: Callable[[ProgressInfo], None], started: float,
                 expected: int | None, scan: Prescan) -> None:
        self.stats, self.progress, self.started, self.expected = stats, progress, started, expected
        self.scan = scan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def start(self) -> None:
        self.scan.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.scan.stop()
        self._thread.join()

    def _run(self) -> None:
        interval = refresh_seconds()
        while not self._stop.wait(interval):
            s, scan = self.stats, self.scan
            done = scan.done
            try:
                self.progress(ProgressInfo(s.files_done, s.bytes_done, s.bytes_read,
                                           time.monotonic() - self.started,
                                           scan.bytes if done else self.expected,
                                           scanned_files=scan.files, scanned_bytes=scan.bytes,
                                           scan_done=done))
            except Exception:  # a broken progress display must not break the backup
                log.debug("progress callback failed", exc_info=True)
