"""The agent daemon (``cbr-agent run``); its one-shot form is :mod:`cbr_agent.agent.once`.

Three threads, each owning its part:
- the main thread waits for signals (through a wakeup pipe, so a handler never takes a lock), pings the
  systemd watchdog and stops everything on SIGTERM/SIGINT within :data:`STOP_BUDGET` seconds;
- the sync thread registers, heartbeats and syncs the path list, backing off while the control plane is
  away and logging once per change of state, not once per failure;
- the backup scheduler thread runs one backup at a time when the schedule says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from cbr_agent.agent import hostfacts
from cbr_agent.agent.backoff import failure_delay, heartbeat_delay
from cbr_agent.agent.cbrlink import CbrWork
from cbr_agent.agent.connect import describe_endpoint, open_control_plane
from cbr_agent.agent.heartbeat import ControlPlaneFactory, Syncer, SyncResult, registration_record
from cbr_agent.agent.identity import Identity, load_identity
from cbr_agent.agent.journal import Journal
from cbr_agent.agent.keptrepo import KeptRepository
from cbr_agent.agent.metrics import AgentExporter
from cbr_agent.agent.notify import Notifier
from cbr_agent.agent.reloadguard import identity_changes
from cbr_agent.agent.reloadguard import refusal as reload_refusal
from cbr_agent.agent.scheduler import BackupScheduler, JobFunction, default_job, parse_time
from cbr_agent.agent.state import (
    PidLock,
    load_agent_state,
    load_paths_or_recover,
    save_paths,
    update_agent_state,
    utc_now,
)
from cbr_agent.api.models import AgentPath
from cbr_agent.api.models import parse_time as parse_wire_time
from cbr_agent.config import Settings
from cbr_agent.errors import (
    ApiError,
    AuthError,
    CbrAgentError,
    ConfigError,
    ControlPlaneUnavailable,
    StateError,
)
from cbr_agent.pathrules import PathRuleError, normalize_exclude, normalize_path

log = logging.getLogger("cbr_agent.agent")

#: seconds from SIGTERM to exit, whatever is running (systemd's default stop timeout is 90 s; the
#: issue asks for 5)
STOP_BUDGET = 4.0
#: how long a stop waits for an in-flight heartbeat call
SYNC_STOP_WAIT = 0.5
#: attempts per control plane call inside one heartbeat; the daemon's own backoff does the rest
DAEMON_MAX_ATTEMPTS = 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _daemon_control_plane(settings: Settings) -> Any:
    return open_control_plane(settings, max_attempts=DAEMON_MAX_ATTEMPTS)


def _problem_kind(exc: BaseException) -> str:
    if isinstance(exc, AuthError):
        return "refused"
    if isinstance(exc, ControlPlaneUnavailable):
        return "unavailable"
    if isinstance(exc, ApiError):
        return f"error {exc.status}"
    if isinstance(exc, ConfigError):
        return "misconfigured"
    return "internal error"


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        reload: Callable[[], Settings] | None = None,
        job: Callable[[], JobFunction] = default_job,
        notifier: Notifier | None = None,
        open_cp: ControlPlaneFactory = _daemon_control_plane,
        facts: Callable[[], hostfacts.HostFacts] = hostfacts.collect,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._reload_settings = reload
        self._job = job
        self.notifier = notifier or Notifier()
        self._open_cp = open_cp
        self._facts = facts
        self._rng = rng or random.Random()
        self._stopping = threading.Event()
        self._sync_wake = threading.Event()
        self._pending: Settings | None = None
        self._paths: tuple[AgentPath, ...] | None = None
        self._problem: str | None = None
        self._state_problem = False
        self._ready = False
        self._registered_once = False
        self.metrics = AgentExporter.disabled()
        # the file change journal serves the backup engine's walk; an injected job gets no hint
        self.journal: Journal | None = None
        self._use_journal = job is default_job
        self._kept_repo = KeptRepository()
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)

    # -- public ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop as SIGTERM would; callable from any thread."""
        with contextlib.suppress(OSError):
            os.write(self._wake_w, bytes([signal.SIGTERM]))

    def run(self) -> int:
        state_dir = self.settings.state_dir
        try:
            with PidLock(state_dir):
                identity = load_identity(state_dir, pinned=self.settings.agent_id)
                self.agent_id = identity.agent_id
                return self._run(identity)
        finally:
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- lifecycle ---------------------------------------------------------------------------

    def _run(self, identity: Identity) -> int:
        state_dir = self.settings.state_dir
        previous = load_agent_state(state_dir)
        self.metrics = AgentExporter.from_settings(self.settings, identity.agent_id, previous)
        self.metrics.start()
        cache = load_paths_or_recover(state_dir)
        if cache is not None and cache.agent_id == identity.agent_id:
            self._paths = cache.paths
        # the creation time of our agent on *this* control plane: a change of it means the agent was
        # deleted there and registered again; one learned from another control plane means nothing
        same_place = previous.get("agent_id") == identity.agent_id \
            and previous.get("endpoint") == describe_endpoint(self.settings) \
            and previous.get("project_id") == self.settings.project_id
        known_created = parse_wire_time(previous.get("created_at")) if same_place else None
        self.syncer = Syncer(self.settings, identity.agent_id, open_cp=self._open_cp,
                             facts=self._facts, known_created_at=known_created)
        self._record({"agent_id": identity.agent_id, "endpoint": describe_endpoint(self.settings),
                      "project_id": self.settings.project_id,
                      "daemon": {"pid": os.getpid(), "started_at": utc_now()},
                      "backup_running": False, "backup_schedule": self.settings.backup_schedule,
                      "registered": previous.get("registered", False)
                      and previous.get("agent_id") == identity.agent_id})
        log.info("cbr-agent daemon starting: agent %s, control plane %s, heartbeat every %gs",
                 identity.agent_id, describe_endpoint(self.settings), self.settings.heartbeat_interval)
        self.notifier.status("registering with the control plane")
        last_backup = previous.get("last_backup") or {}
        self.cbr = CbrWork(self)  # CBR tasks, the cached policy, backup reports (issue 12)
        if self._use_journal:
            self.journal = Journal(self.settings.full_scan_interval,
                                   on_change=lambda status: self._record({"journal": status}))
            self.journal.start()
            self._watch_paths()
        self.scheduler = BackupScheduler(
            settings=self._for_job(self.settings),
            job=self.cbr.reporting_job(self._engine_job if self._use_journal else self._job),
            paths=lambda: self._paths,
            record=self._record, last_end=parse_time(last_backup.get("finished_at")),
            journal=self.journal)
        sync_thread = threading.Thread(target=self._sync_loop, name="heartbeat", daemon=True)
        restore = self._install_signals()
        try:
            sync_thread.start()
            self.scheduler.start()
            self.cbr.start()
            code = self._main_loop(sync_thread)
        finally:
            restore()
            self._shutdown(sync_thread)
        return code

    def _shutdown(self, sync_thread: threading.Thread) -> None:
        deadline = time.monotonic() + STOP_BUDGET
        self.notifier.stopping("stopping")
        self._stopping.set()
        self._sync_wake.set()
        self.scheduler.stop()
        if not self.scheduler.join(max(0.0, deadline - time.monotonic())):
            log.warning("the running backup did not stop within %gs; exiting anyway (an unfinished "
                        "backup leaves no snapshot, and the next one reuses what it stored)", STOP_BUDGET)
        self.cbr.join(max(0.0, deadline - time.monotonic() - SYNC_STOP_WAIT))
        # a heartbeat stuck on a silent network holds nothing worth waiting for
        sync_thread.join(min(SYNC_STOP_WAIT, max(0.0, deadline - time.monotonic())))
        if self.journal is not None:
            self.journal.stop(min(0.5, max(0.0, deadline - time.monotonic())))
        with contextlib.suppress(CbrAgentError):
            self._record({"daemon": None, "backup_running": False, "stopped_at": utc_now()})
        self.metrics.close()
        log.info("cbr-agent daemon stopped")

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # embedded in a test thread: request_stop() is the way in
        handled = (*STOP_SIGNALS, signal.SIGHUP, signal.SIGUSR1)
        old_handlers = {sig: signal.signal(sig, _note_signal) for sig in handled}
        old_fd = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

        def restore() -> None:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)

        return restore

    def _main_loop(self, sync_thread: threading.Thread) -> int:
        watchdog = self.notifier.watchdog_interval
        next_ping = time.monotonic()
        while True:
            now = time.monotonic()
            if watchdog and now >= next_ping:
                if sync_thread.is_alive():  # a dead worker must let systemd's watchdog fire
                    self.notifier.watchdog()
                next_ping = now + watchdog
            timeout = max(0.0, next_ping - now) if watchdog else 5.0
            readable, _, _ = select.select([self._wake_r], [], [], timeout)
            for signum in self._drain() if readable else ():
                if signum in STOP_SIGNALS:
                    log.info("received %s: stopping", signal.Signals(signum).name)
                    return 0
                if signum == signal.SIGHUP:
                    self._reload()
                elif signum == signal.SIGUSR1:
                    log.info("received SIGUSR1: syncing with the control plane now")
                    self._sync_wake.set()
            if not sync_thread.is_alive():
                log.error("the heartbeat thread died; exiting so that the service manager restarts "
                          "the daemon")
                return 1

    def _drain(self) -> list[int]:
        signums: list[int] = []
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while chunk := os.read(self._wake_r, 64):
                signums.extend(chunk)
        return signums

    # -- configuration reload (SIGHUP) -------------------------------------------------------

    def _reload(self) -> None:
        if self._reload_settings is None:
            return
        self.notifier.reloading()
        try:
            new = self._reload_settings()
        except CbrAgentError as exc:
            log.error("configuration reload failed, keeping the running configuration: %s", exc)
            self.notifier.ready(self._status_line())
            return
        refused = reload_refusal(self.settings, new, self.agent_id)
        if refused is not None:
            log.error("CONFIGURATION RELOAD REFUSED, the daemon keeps running on the previous "
                      "configuration (control plane %s, project %s): %s", describe_endpoint(self.settings),
                      self.settings.project_id, refused)
            self._record({"last_reload": {"status": "refused", "reason": refused, "at": utc_now()}})
            self.notifier.ready(self._status_line())
            return
        for change in identity_changes(self.settings, new, self.agent_id):
            log.warning("configuration reload changes %s (allowed by allow_reload_identity_change)", change)
        if new.state_dir != self.settings.state_dir:
            log.warning("state_dir changed to %s; that takes effect at the next start", new.state_dir)
            new = dataclasses.replace(new, state_dir=self.settings.state_dir)
        if new.agent_id != self.settings.agent_id:
            log.warning("agent_id changed; that takes effect at the next start")
        if self.journal is not None:
            self.journal.full_scan_interval = new.full_scan_interval
            if new.one_file_system != self.settings.one_file_system:
                self.journal.rescan_all()
        self.settings = new
        self._pending = new
        self.scheduler.reconfigure(self._for_job(new))
        self._record({"endpoint": describe_endpoint(new), "project_id": new.project_id,
                      "backup_schedule": new.backup_schedule,
                      "last_reload": {"status": "ok", "at": utc_now()}})
        log.info("configuration reloaded from %s", new.config_file)
        self._sync_wake.set()
        self.notifier.ready(self._status_line())

    # -- heartbeat and path sync -------------------------------------------------------------

    def _sync_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self._pending is not None:
                pending, self._pending = self._pending, None
                self.syncer.reconfigure(pending)
            ok = self._sync_step()
            failures = 0 if ok else failures + 1
            interval = self.settings.heartbeat_interval
            delay = heartbeat_delay(interval, self._rng) if ok \
                else failure_delay(interval, failures, self._rng)
            self._sync_wake.wait(delay)
            self._sync_wake.clear()
        self.syncer.close()  # here: an embedded control plane's connection belongs to this thread

    def _sync_step(self) -> bool:
        try:
            result = self.syncer.sync()
        except CbrAgentError as exc:
            self._failed(exc)
            return False
        except Exception as exc:  # a bug: keep heartbeating, say it, trace at debug level
            log.debug("heartbeat failed", exc_info=True)
            self._failed(exc)
            return False
        try:
            self._synced(result)
        except StateError as exc:
            self._state_trouble(exc)
        return True

    def _synced(self, result: SyncResult) -> None:
        if not self._registered_once:
            self._registered_once = True
            log.info("registered as agent %s with %s (status %s, %d path(s))", self.agent_id,
                     describe_endpoint(self.settings), result.agent.status, len(result.paths))
        if self._problem is not None:
            log.info("control plane %s is reachable again", describe_endpoint(self.settings))
            self._problem = None
        if result.paths != self._paths:
            if self._paths is not None:
                log.info("path list changed: %s", _describe_paths(result.paths))
            self._paths = result.paths
            self._watch_paths()
            self.scheduler.poke()
            save_paths(self.settings.state_dir, self.agent_id, result.paths)
        self._record({**registration_record(self.settings, result), "last_error": None})
        status = self._status_line()
        if not self._ready:
            self._ready = True
            self.notifier.ready(status)
        else:
            self.notifier.status(status)

    def _failed(self, exc: BaseException) -> None:
        kind = _problem_kind(exc)
        message = str(exc) if isinstance(exc, CbrAgentError) else f"{type(exc).__name__}: {exc}"
        if kind != self._problem:
            cached = "no cached paths" if self._paths is None else f"{len(self._paths)} cached path(s)"
            log.warning("heartbeat failed (%s): %s; retrying with backoff, running on %s",
                        kind, message, cached)
        else:
            log.debug("heartbeat failed again (%s): %s", kind, message)
        self._problem = kind
        with contextlib.suppress(CbrAgentError):
            self._record({"control_plane": kind, "last_error": {"message": message, "at": utc_now()}})
        status = f"control plane {kind}; running on cached state"
        if not self._ready:
            self._ready = True  # systemd must not time out while the control plane is away
            self.notifier.ready(status)
        else:
            self.notifier.status(status)

    def _engine_job(self) -> JobFunction:
        """The backup engine, on the repository the daemon keeps open between backups."""
        backup = default_job()
        kept = self._kept_repo

        def job(settings: Settings, paths: list[AgentPath], *, cancel: threading.Event,
                changes: Any = None) -> Any:
            repo = kept.get(settings)
            try:
                return backup(settings, paths, cancel=cancel, changes=changes, repo=repo,
                              listings=kept.listings())
            except BaseException:  # whatever went wrong, the next backup opens the repository afresh
                kept.drop()
                raise

        return job

    def _watch_paths(self) -> None:
        """Point the journal at the current backup paths (a bad path is the backup's to report)."""
        if self.journal is None:
            return
        roots = []
        for path in self._paths or ():
            try:
                root = normalize_path(path.dir_path)
                roots.append((root, tuple(normalize_exclude(root, e) for e in path.excludes)))
            except PathRuleError:
                continue
        self.journal.watch(roots)

    def _for_job(self, settings: Settings) -> Settings:
        """The backup engine tags snapshots with ``settings.agent_id``: give it ours."""
        return dataclasses.replace(settings, agent_id=self.agent_id)

    # -- state for status ---------------------------------------------------------------------

    def _record(self, changes: dict[str, Any]) -> None:
        changes = {**changes, **self.metrics.observe(changes)}
        try:
            update_agent_state(self.settings.state_dir, changes)
        except StateError as exc:
            self._state_trouble(exc)
        else:
            if self._state_problem:
                log.info("the state directory %s is writable again", self.settings.state_dir)
                self._state_problem = False

    def _state_trouble(self, exc: StateError) -> None:
        if not self._state_problem:
            log.warning("%s; the daemon keeps running, but status and the path cache are stale", exc)
        self._state_problem = True

    def _status_line(self) -> str:
        paths = "no paths" if not self._paths else f"{len(self._paths)} path(s)"
        return f"agent {self.agent_id}: {paths}, control plane {self._problem or 'ok'}"


def _note_signal(signum: int, frame: object) -> None:
    """Python-level handler; the wakeup fd carries the signal number to the main loop."""


def _describe_paths(paths: Sequence[AgentPath]) -> str:
    if not paths:
        return "no paths"
    return ", ".join(p.dir_path + (f" (excluding {', '.join(p.excludes)})" if p.excludes else "")
                     for p in paths)
