"""Scheduled backups in the daemon: one at a time, in a worker thread, cancelled cleanly on shutdown.

The job function is injected (the daemon passes :func:`default_job`: the engine's
:func:`cbr_agent.backup.run.backup_paths` with its options as keywords); it gets the settings, the paths
to back up and a cancel event, and returns a summary with ``snapshot_id``, ``warnings`` and
``to_dict()``. Outcomes and the next due time go to the agent state for ``status``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from cbr_agent.agent.schedule import Schedule, parse_schedule
from cbr_agent.api.models import AgentPath
from cbr_agent.config import Settings
from cbr_agent.errors import Cancelled, CbrAgentError, RepositoryLocked

log = logging.getLogger(__name__)

#: a backup that finds the repository locked (a prune, a check, a backup from another host) tries
#: again after this many seconds, doubled each time up to LOCK_RETRY_MAX, until the next scheduled run
LOCK_RETRY_FIRST = 0.5
LOCK_RETRY_MAX = 60.0


class Summary(Protocol):
    snapshot_id: Any
    warnings: Any

    def to_dict(self) -> dict[str, Any]: ...


JobFunction = Callable[..., Summary]
Clock = Callable[[], datetime]


def local_now() -> datetime:
    return datetime.now().astimezone()


def default_job() -> JobFunction:
    """The backup engine's entry point, imported only when a backup runs, as a job function: its keyword
    arguments (``cancel``, ``changes``, ...) are fields of :class:`cbr_agent.backup.run.RunOptions`."""
    try:
        from cbr_agent.backup.run import RunOptions, backup_paths
    except ImportError as exc:
        raise CbrAgentError(f"the backup engine is not available in this installation ({exc})",
                            hint="reinstall cbr-agent") from None

    def job(settings: Settings, paths: Sequence[AgentPath], **options: Any) -> Summary:
        return backup_paths(settings, paths, RunOptions(**options))

    return job


def run_job(job: JobFunction, settings: Settings, paths: Sequence[AgentPath],
            cancel: threading.Event, clock: Clock = local_now, changes: Any = None) -> dict[str, Any]:
    """Run one backup and describe its outcome as the agent state keeps it (never raises).
    ``changes``: the journal's hint of what changed (passed to the job only when there is one)."""
    started = clock()
    record: dict[str, Any] = {"started_at": started.isoformat(timespec="seconds"),
                              "paths": [p.dir_path for p in paths]}
    extra = {"changes": changes} if changes is not None else {}
    try:
        summary = job(settings, list(paths), cancel=cancel, **extra)
    except Cancelled:
        record.update(status="cancelled", error="stopped before it finished")
    except RepositoryLocked as exc:  # the scheduler tries again (see BackupScheduler._wait_for_lock)
        record.update(status="failed", error=str(exc), locked=True)
    except CbrAgentError as exc:
        record.update(status="failed", error=str(exc))
    except Exception as exc:  # a bug in the engine must not take the daemon down
        log.error("backup failed with an internal error: %s: %s", type(exc).__name__, exc,
                  exc_info=log.isEnabledFor(logging.DEBUG))
        record.update(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
    else:
        warnings = list(getattr(summary, "warnings", None) or [])
        record.update(status="warnings" if warnings else "ok",
                      snapshot_id=getattr(summary, "snapshot_id", None),
                      warnings=len(warnings))
        to_dict = getattr(summary, "to_dict", None)
        if callable(to_dict):
            record["summary"] = to_dict()
            # for status: the engine's own time, and whether the journal led the walk
            for key in ("duration", "scan"):
                if key in record["summary"]:
                    record[key] = record["summary"][key]
    finished = clock()
    record["finished_at"] = finished.isoformat(timespec="seconds")
    record["seconds"] = round((finished - started).total_seconds(), 3)
    return record


class BackupScheduler:
    """A thread that waits for the schedule, runs the job, and records what happened."""

    def __init__(self, *, settings: Settings, job: Callable[[], JobFunction],
                 paths: Callable[[], Sequence[AgentPath] | None],
                 record: Callable[[dict[str, Any]], None], clock: Clock = local_now,
                 last_end: datetime | None = None, journal: Any = None) -> None:
        self._settings = settings
        self._schedule = _schedule_of(settings)
        self._job = job
        self._paths = paths
        self._record = record
        self._clock = clock
        self.last_end = last_end
        self._journal = journal   # agent.journal.Journal, or None: every backup walks everything
        self.cancel = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.running = False
        self._said_no_paths = False
        self._thread = threading.Thread(target=self._loop, name="backup-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def reconfigure(self, settings: Settings) -> None:
        with self._lock:
            self._settings = settings
            self._schedule = _schedule_of(settings)
        self._wake.set()

    def poke(self) -> None:
        """The path list changed: look again."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self.cancel.set()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                schedule, settings = self._schedule, self._settings
            if schedule is None:
                self._record({"next_backup": None})
                self._wait(None)
                continue
            now = self._clock()
            due = schedule.next_after(self.last_end, now)
            self._record({"next_backup": due.isoformat(timespec="seconds")})
            if due > now:
                self._wait((due - now).total_seconds())
                continue  # re-check: woken early by a reload or a stop, or due now
            self._run(settings)

    def _wait(self, seconds: float | None) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self, settings: Settings) -> None:
        paths = self._paths()
        if not paths:  # wait for a path list (the daemon pokes us when it changes)
            if not self._said_no_paths:
                log.info("a backup is due but there are no backup paths yet (add one with "
                         "'cbr-agent path add DIR'); waiting for them")
                self._said_no_paths = True
            self._wait(None)
            return
        self._said_no_paths = False
        log.info("scheduled backup of %d path(s) starting", len(paths))
        self.running = True
        self._record({"backup_running": True})
        # taken now, not at the end: what changes while the backup runs stays dirty for the next one
        if self._journal is not None:  # its watches first: else this backup and the next scan fully
            self._journal.wait_ready(self.cancel)
        changes = self._journal.take() if self._journal is not None else None
        outcome: dict[str, Any] | None = None
        try:
            job = self._job()
            started = self._clock()
            outcome = run_job(job, settings, paths, self.cancel, self._clock, changes)
            if outcome.get("locked"):
                outcome = self._wait_for_lock(job, settings, paths, outcome, started, changes)
        except CbrAgentError as exc:
            outcome = {"status": "failed", "error": str(exc),
                       "finished_at": self._clock().isoformat(timespec="seconds")}
        finally:
            self.running = False
            if self._journal is not None:
                self._journal_outcome(outcome)
        self.last_end = self._clock()
        _log_outcome(outcome)
        self._record({"last_backup": outcome, "backup_running": False})


    def _journal_outcome(self, outcome: dict[str, Any] | None) -> None:
        assert self._journal is not None
        if outcome and outcome.get("status") in ("ok", "warnings") and outcome.get("snapshot_id"):
            summary = outcome.get("summary") or {}
            self._journal.finished(outcome["snapshot_id"], outcome.get("scan"),
                                   summary.get("warnings") or ())
        else:
            self._journal.failed()

    def _next_run(self, started: datetime) -> datetime:
        with self._lock:
            schedule = self._schedule
        if schedule is None:
            return started
        return schedule.next_after(started, started)

    def _wait_for_lock(self, job: JobFunction, settings: Settings, paths: Sequence[AgentPath],
                       outcome: dict[str, Any], started: datetime, changes: Any = None) -> dict[str, Any]:
        """Try the backup again with backoff while the repository is locked, until the next scheduled
        run (said once); a stop ends the wait. The outcome counts from the first attempt."""
        until = self._next_run(started)
        log.warning("scheduled backup is waiting: %s; trying again until %s", outcome.get("error"),
                    until.isoformat(timespec="seconds"))
        self._record({"backup_waiting": outcome.get("error")})
        pause = LOCK_RETRY_FIRST
        try:
            while outcome.get("locked"):
                left = (until - self._clock()).total_seconds()
                if left <= 0:
                    outcome["error"] = f"{outcome.get('error')}; still locked at the next scheduled run"
                    break
                if self._stop.wait(min(pause, left)):
                    outcome.update(status="cancelled", error="stopped while waiting for the repository lock")
                    break
                pause = min(pause * 2, LOCK_RETRY_MAX)
                outcome = run_job(job, settings, paths, self.cancel, self._clock, changes)
        finally:
            self._record({"backup_waiting": None})
        outcome.pop("locked", None)
        outcome["started_at"] = started.isoformat(timespec="seconds")
        outcome["seconds"] = round((self._clock() - started).total_seconds(), 3)
        return outcome


def _schedule_of(settings: Settings) -> Schedule | None:
    return parse_schedule(settings.backup_schedule) if settings.backup_schedule else None


def _log_outcome(outcome: dict[str, Any]) -> None:
    status = outcome.get("status")
    if status == "ok":
        log.info("backup done: snapshot %s", outcome.get("snapshot_id"))
    elif status == "warnings":
        log.warning("backup done with %s warning(s): snapshot %s", outcome.get("warnings"),
                    outcome.get("snapshot_id"))
    elif status == "cancelled":
        log.info("backup cancelled")
    else:
        log.error("backup failed: %s", outcome.get("error"))


def parse_time(value: Any) -> datetime | None:
    """A time the state file holds, or None."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.astimezone()

