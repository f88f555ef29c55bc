"""The daemon's Prometheus metrics: on a local port (``metrics_address``) and/or as a node_exporter
textfile (``metrics_textfile``).

Everything comes from what the daemon already records in its state (:meth:`Daemon._record`): the
outcome of the last backup, heartbeats, the control-plane state, and the CBR task running now and the
last one that ended (:mod:`cbr_agent.agent.taskrun` records both). :meth:`AgentExporter.observe`
sees every such change, so this module needs no hook in the scheduler or the syncer.

The port needs ``prometheus_client`` (the ``metrics`` extra). The textfile does not: it is written
with the library when it is installed, else by :func:`render_text`, which writes the same text
format (the unit tests parse both). The file is replaced atomically (temp file + rename in the same
directory), so node_exporter never reads half of it; the temp name does not end in ``.prom``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from cbr_agent import __version__
from cbr_agent.config import Settings
from cbr_agent.errors import ConfigError
from cbr_agent.hostport import listen_metrics

log = logging.getLogger(__name__)

PREFIX = "cbr_agent_"
#: the values of ``cbr_agent_control_plane_state{state=...}``; exactly one is 1
CONTROL_PLANE_STATES = ("ok", "unavailable", "refused", "error", "misconfigured", "internal", "unknown")
BACKUP_STATUSES = ("ok", "warnings", "failed", "cancelled")
FILE_KINDS = ("new", "changed", "unchanged")
#: summary key -> ``kind`` label of cbr_agent_last_backup_bytes
BYTE_KINDS = {"bytes_total": "total", "bytes_read": "read", "bytes_added": "added",
              "bytes_stored": "stored"}
#: ... and the split of ``total`` by file, exported when the summary has it (older ones do not)
BYTE_SPLIT = {"bytes_new": "new", "bytes_changed": "changed", "bytes_unchanged": "unchanged"}
#: values of the summary's ``scan`` (``kind`` label of cbr_agent_last_backup_scan)
SCAN_KINDS = ("journal", "full")
#: CBR task types and the outcomes an agent reports (cbr_agent.agent.taskrun)
TASK_TYPES = ("backup", "restore", "delete", "vault_delete", "remove_resource")
TASK_RESULTS = ("success", "failed")
SUCCESS = ("ok", "warnings")


@dataclass
class Family:
    """One metric family: ``kind`` is ``gauge`` or ``counter`` (whose samples get ``_total``)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Family:
        self.samples.append((labels, float(value)))
        return self


def _epoch(value: Any) -> float | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.astimezone()).timestamp()


def _plane_state(kind: Any) -> str:
    text = str(kind or "unknown")
    if text.startswith("error"):
        return "error"
    if text.startswith("internal"):
        return "internal"
    return text if text in CONTROL_PLANE_STATES else "unknown"


def local_repository(repository: str) -> Path | None:
    """The directory of a local repository (a path or ``file://``), else None."""
    if "://" not in repository:
        return Path(repository).expanduser()
    parsed = urlparse(repository)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def directory_size(path: Path) -> int | None:
    """Bytes of the files under ``path`` (None when it cannot be read)."""
    total = 0
    try:
        for root, _dirs, files in os.walk(path, onerror=_raise):
            for name in files:
                with contextlib.suppress(FileNotFoundError):  # a pack removed by a prune meanwhile
                    total += os.lstat(os.path.join(root, name)).st_size
    except OSError:
        return None
    return total


def _raise(exc: OSError) -> None:
    raise exc


class AgentMetrics:
    """The values, updated from the agent state changes the daemon records."""

    def __init__(self, agent_id: str, repository: str, *, clock: Callable[[], float] = time.time) -> None:
        self.agent_id = agent_id
        self.repository = repository
        self.clock = clock
        self.running = True
        self.control_plane = "unknown"
        self.heartbeat_failures = 0
        self.last_heartbeat: float | None = None
        self.backup_running = False
        self.last_backup: dict[str, Any] = {}
        self.last_success: float | None = None
        self.failures_in_row = 0
        self.repository_size: int | None = None
        self.task: dict[str, Any] | None = None  # the CBR task running now
        self.last_task: dict[str, Any] = {}
        self.last_task_at: float | None = None
        self.tasks_ended: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def load(self, state: Mapping[str, Any]) -> None:
        """What the previous run left in the state file (so a restart keeps the backup figures)."""
        with self._lock:
            self.last_backup = dict(state.get("last_backup") or {})
            self.last_success = _epoch(state.get("last_backup_success_at"))
            self.failures_in_row = int(state.get("backup_failures_in_row") or 0)
            self.last_task = dict(state.get("last_task") or {})
            self.last_task_at = _epoch(self.last_task.get("ended_at"))
        self.measure_repository()

    def observe(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Take in one state change; return what the state must also keep (for the next start)."""
        extra: dict[str, Any] = {}
        with self._lock:
            if "control_plane" in changes:
                self.control_plane = _plane_state(changes["control_plane"])
                if self.control_plane != "ok":
                    self.heartbeat_failures += 1
            if changes.get("last_heartbeat"):
                self.last_heartbeat = _epoch(changes["last_heartbeat"])
            if "backup_running" in changes:
                self.backup_running = bool(changes["backup_running"])
            if "task" in changes:
                self.task = dict(changes["task"]) if isinstance(changes["task"], dict) else None
            if isinstance(changes.get("last_task"), dict):
                self.last_task = dict(changes["last_task"])
                self.last_task_at = _epoch(self.last_task.get("ended_at")) or self.clock()
                key = (str(self.last_task.get("operation_type")), str(self.last_task.get("status")))
                self.tasks_ended[key] = self.tasks_ended.get(key, 0) + 1
            outcome = changes.get("last_backup")
            if isinstance(outcome, dict):
                self.last_backup = dict(outcome)
                status = outcome.get("status")
                if status in SUCCESS:
                    self.failures_in_row = 0
                    self.last_success = _epoch(outcome.get("finished_at")) or self.clock()
                    extra["last_backup_success_at"] = outcome.get("finished_at")
                elif status == "failed":
                    self.failures_in_row += 1
                extra["backup_failures_in_row"] = self.failures_in_row
        if isinstance(changes.get("last_backup"), dict):
            self.measure_repository()
        return extra

    def measure_repository(self) -> None:
        directory = local_repository(self.repository)
        size = directory_size(directory) if directory is not None and directory.is_dir() else None
        with self._lock:
            self.repository_size = size

    def families(self) -> list[Family]:
        with self._lock:
            return self._families()

    def _families(self) -> list[Family]:
        def gauge(name: str, text: str) -> Family:
            return Family(PREFIX + name, "gauge", text)

        out = [
            gauge("info", "The agent: its id and cbr-agent version (always 1)")
            .add(1, agent_id=self.agent_id, version=__version__),
            gauge("daemon_running", "1 while the daemon runs; 0 written when it stops")
            .add(int(self.running)),
            Family(PREFIX + "heartbeat_failures", "counter",
                   "Heartbeats that failed since the daemon started").add(self.heartbeat_failures),
        ]
        plane = gauge("control_plane_state", "1 for the control plane's current state as the agent "
                      "sees it (ok, unavailable, refused, error, misconfigured, internal, unknown)")
        for state in CONTROL_PLANE_STATES:
            plane.add(int(state == self.control_plane), state=state)
        out.append(plane)
        if self.last_heartbeat is not None:
            out.append(gauge("last_heartbeat_timestamp_seconds", "When the last heartbeat succeeded")
                       .add(self.last_heartbeat))
        out.append(gauge("backup_running", "1 while a backup runs").add(int(self.backup_running)))
        out.append(gauge("backup_failures_in_row", "Backups that failed in a row since the last one "
                         "that succeeded").add(self.failures_in_row))
        if self.last_success is not None:
            out.append(gauge("last_backup_success_timestamp_seconds",
                             "When the last successful backup (ok or with warnings) finished")
                       .add(self.last_success))
        out += self._last_backup_families(gauge)
        out += self._task_families(gauge)
        if self.repository_size is not None:
            out.append(gauge("repository_size_bytes", "Bytes the local repository takes on disk, "
                             "measured after each backup").add(self.repository_size))
        return out

    def _last_backup_families(self, gauge: Callable[[str, str], Family]) -> list[Family]:
        backup = self.last_backup
        status = backup.get("status")
        if status not in BACKUP_STATUSES:
            return []
        out = []
        finished = _epoch(backup.get("finished_at"))
        if finished is not None:
            out.append(gauge("last_backup_timestamp_seconds", "When the last backup (whatever its "
                             "outcome) finished").add(finished))
        last = gauge("last_backup_status", "1 for the outcome of the last backup")
        for name in BACKUP_STATUSES:
            last.add(int(name == status), status=name)
        out.append(last)
        if isinstance(backup.get("seconds"), (int, float)):
            out.append(gauge("last_backup_duration_seconds", "How long the last backup took")
                       .add(backup["seconds"]))
        out.append(gauge("last_backup_warnings", "Warnings of the last backup (files it could not read)")
                   .add(int(backup.get("warnings") or 0)))
        summary = backup.get("summary") or {}
        if summary:
            files = gauge("last_backup_files", "Files of the last backup, by kind")
            for kind in FILE_KINDS:
                files.add(int(summary.get(f"files_{kind}") or 0), kind=kind)
            data = gauge("last_backup_bytes", "Bytes of the last backup: total (all files), read "
                         "(new and changed files), added (new data after deduplication), stored "
                         "(added data compressed and encrypted); total split by file: new, "
                         "changed, unchanged")
            for key, kind in BYTE_KINDS.items():
                data.add(int(summary.get(key) or 0), kind=kind)
            for key, kind in BYTE_SPLIT.items():
                if key in summary:
                    data.add(int(summary.get(key) or 0), kind=kind)
            out += [files, data]
        if summary.get("scan") in SCAN_KINDS:  # engines before the change journal do not say
            scan = gauge("last_backup_scan", "1 for how the last backup found its changes: journal "
                         "(only what the daemon's file change journal saw) or full (a walk of every path)")
            for kind in SCAN_KINDS:
                scan.add(int(summary["scan"] == kind), kind=kind)
            out.append(scan)
        return out

    def _task_families(self, gauge: Callable[[str, str], Family]) -> list[Family]:
        running = gauge("task_running", "1 for the type of the CBR task (backup, restore, delete ...) "
                        "the agent runs now")
        kind = (self.task or {}).get("operation_type")
        for name in TASK_TYPES:
            running.add(int(name == kind), operation_type=name)
        out = [running, gauge("task_progress_percent", "Progress of the running CBR task (0 when none)")
               .add(int((self.task or {}).get("progress") or 0))]
        ended = Family(PREFIX + "tasks", "counter", "CBR tasks this daemon ended since it started, by "
                       "type and result")
        for name in TASK_TYPES:
            for result in TASK_RESULTS:
                ended.add(self.tasks_ended.get((name, result), 0), operation_type=name, status=result)
        out.append(ended)
        last = self.last_task
        if last.get("status") in TASK_RESULTS and last.get("operation_type") in TASK_TYPES:
            status = gauge("last_task_status", "1 for the type and result of the last CBR task that ended")
            for result in TASK_RESULTS:
                status.add(int(result == last["status"]), operation_type=last["operation_type"],
                           status=result)
            out.append(status)
            if self.last_task_at is not None:
                out.append(gauge("last_task_timestamp_seconds", "When the last CBR task ended")
                           .add(self.last_task_at))
        return out


# -- text format ---------------------------------------------------------------------------------

def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def render_text(families: Iterable[Family]) -> str:
    """The Prometheus text exposition format (0.0.4), as node_exporter's textfile collector reads it."""
    lines: list[str] = []
    for family in families:
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"# HELP {family.name}{'_total' if family.kind == 'counter' else ''} {help_text}")
        lines.append(f"# TYPE {family.name}{'_total' if family.kind == 'counter' else ''} {family.kind}")
        suffix = "_total" if family.kind == "counter" else ""
        for labels, value in family.samples:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{family.name}{suffix}{'{' + text + '}' if text else ''} {_number(value)}")
    return "\n".join(lines) + "\n"


def _library() -> Any | None:
    try:
        import prometheus_client
    except ImportError:
        return None
    return prometheus_client


class _Collector:
    """A prometheus_client collector over :meth:`AgentMetrics.families`."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for family in self.metrics.families():
            names = sorted({k for labels, _ in family.samples for k in labels})
            kind = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            out = kind(family.name, family.help, labels=names)
            for labels, value in family.samples:
                out.add_metric([labels.get(n, "") for n in names], value)
            yield out


def render(metrics: AgentMetrics) -> str:
    """The text format: by prometheus_client when it is installed, else by :func:`render_text`."""
    lib = _library()
    if lib is None:
        return render_text(metrics.families())
    registry = lib.CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics))
    return str(lib.generate_latest(registry).decode("utf-8"))


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` atomically: a temp file in the same directory (not ``*.prom``), then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class AgentExporter:
    """Serves and/or writes :class:`AgentMetrics`; :meth:`disabled` does nothing at all."""

    def __init__(self, metrics: AgentMetrics | None, *, address: str | None = None,
                 textfile: str | None = None) -> None:
        self.metrics = metrics
        self.address = address
        self.textfile = Path(textfile).expanduser() if textfile else None
        self._server: Any = None
        self._write_failed = False
        #: the heartbeat and the backup threads both record changes: one writer of the file at a time
        self._write_lock = threading.Lock()

    @classmethod
    def disabled(cls) -> AgentExporter:
        return cls(None)

    @classmethod
    def from_settings(cls, settings: Settings, agent_id: str, state: Mapping[str, Any]) -> AgentExporter:
        if not settings.metrics_address and not settings.metrics_textfile:
            return cls.disabled()
        metrics = AgentMetrics(agent_id, settings.repository)
        metrics.load(state)
        return cls(metrics, address=settings.metrics_address, textfile=settings.metrics_textfile)

    def start(self) -> None:
        """Listen on ``metrics_address`` (a ConfigError if it cannot) and write the first textfile."""
        if self.metrics is None:
            return
        if self.address:
            self._server = serve(self.metrics, self.address)
        self.write()

    def observe(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        if self.metrics is None:
            return {}
        extra = self.metrics.observe(changes)
        self.write()
        return extra

    def write(self) -> None:
        if self.metrics is None or self.textfile is None:
            return
        try:
            with self._write_lock:
                write_textfile(self.textfile, render(self.metrics))
        except OSError as exc:
            if not self._write_failed:
                log.warning("cannot write the metrics textfile %s: %s (retried at every change)",
                            self.textfile, exc.strerror or exc)
            self._write_failed = True
        else:
            if self._write_failed:
                log.info("the metrics textfile %s is written again", self.textfile)
            self._write_failed = False

    def close(self) -> None:
        """Write ``daemon_running 0`` and stop listening."""
        if self.metrics is None:
            return
        self.metrics.running = False
        self.write()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def serve(metrics: AgentMetrics, address: str) -> Any:
    """A prometheus_client HTTP server on ``address`` (in its own daemon thread)."""
    lib = _library()
    if lib is None:
        raise ConfigError("metrics_address is set but prometheus_client is not installed: "
                          "pip install 'cbr-agent[metrics]' (or unset metrics_address, or use "
                          "metrics_textfile, which needs nothing)")
    registry = lib.CollectorRegistry(auto_describe=False)
    registry.register(_Collector(metrics))
    return listen_metrics(lib, registry, address, "metrics_address")

