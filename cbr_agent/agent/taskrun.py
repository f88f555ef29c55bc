"""One CBR task on this host: claim it, run it through the engine (backup, restore, forget), keep its
lease alive with progress reports, and queue its result in the outbox. The worker that finds tasks
is :mod:`cbr_agent.agent.tasks`.

``CBR_AGENT_TEST_TASK_DELAY=S`` (tests only) makes each task wait S seconds first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cbr_agent.agent import outbox
from cbr_agent.agent.tuning import env_seconds, lease_seconds, progress_seconds
from cbr_agent.errors import ApiError, Cancelled, CbrAgentError, RestoreError

log = logging.getLogger("cbr_agent.agent.tasks")

FORGET_TYPES = ("delete", "vault_delete", "remove_resource")


@dataclass
class Context:
    """What a task needs from the daemon, as callables so they read the current values."""

    settings: Callable[[], Any]
    agent_id: str
    paths: Callable[[], Any]
    record: Callable[[dict[str, Any]], None]
    engine_lock: threading.Lock
    stopping: threading.Event


class TaskFailed(CbrAgentError):
    """A task that cannot be done as asked (bad destination, no paths); ``code`` for error_info."""

    def __init__(self, message: str, code: str = "BackupService.9900") -> None:
        super().__init__(message)
        self.code = code


def run_backup(
    ctx: Context, task: dict[str, Any], cancel: threading.Event, progress: Callable[[int], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    from cbr_agent.backup.run import RunOptions, backup_paths

    paths = ctx.paths()
    if not paths:
        raise TaskFailed(
            "this agent has no backup paths; add one with 'cbr-agent path add DIR'", "BackupService.0001"
        )

    def on_progress(info: Any) -> None:
        if info.bytes_expected:
            progress(min(99, int(info.bytes_done * 100 / max(info.bytes_expected, 1))))
        else:  # a first backup: no size to compare with; creep towards 95
            progress(int(95 * (1 - 1 / (1 + info.bytes_done / 2**28))))

    summary = backup_paths(ctx.settings(), list(paths), RunOptions(cancel=cancel, progress=on_progress))
    params = task.get("parameters") or {}
    report = outbox.backup_report(
        summary, agent_id=ctx.agent_id, trigger="checkpoint", auto=bool(params.get("auto_trigger"))
    )["backup"]
    result = {
        "snapshot_id": summary.snapshot_id,
        "files": report["files"],
        "bytes_added": summary.bytes_added,
        "bytes_total": summary.bytes_total,
        "duration": report["duration"],
        "warnings": [str(w) for w in summary.warnings[:20]],
        "warning_count": len(summary.warnings),
    }
    return result, report


def check_destination(destination: str, backed_up: list[str]) -> str:
    """Where a CBR restore may write: absolute, no ``..``, and not inside the backed-up paths
    unless that directory is empty (or does not exist yet)."""
    if not destination.startswith("/"):
        raise TaskFailed(f"destination_path {destination!r} is not absolute")
    if ".." in destination.split("/"):
        raise TaskFailed(f"destination_path {destination!r} contains '..'")
    target = os.path.normpath(destination)
    for root in backed_up:
        inside = target == root or target.startswith(root.rstrip("/") + "/")
        if inside and root != "/" and os.path.isdir(target) and os.listdir(target):
            raise TaskFailed(
                f"destination_path {target} is inside the backed-up path {root} and not empty; "
                "restore into an empty directory or elsewhere"
            )
    return target


def run_restore(
    ctx: Context, task: dict[str, Any], cancel: threading.Event, progress: Callable[[int], None]
) -> dict[str, Any]:
    from cbr_agent.repoaccess.configured import open_repository
    from cbr_agent.restore.restorer import restore_snapshot

    params = task.get("parameters") or {}
    settings = ctx.settings()
    repo = open_repository(settings)
    snap = repo.find_snapshot(params["snapshot_id"])
    target = check_destination(str(params.get("destination_path") or ""), list(snap.paths))
    os.makedirs(target, exist_ok=True)
    summary = restore_snapshot(repo, snap, target, paths=list(params.get("paths") or ()),
                               processes=settings.backup_processes)
    if summary.errors:
        raise RestoreError(
            f"{len(summary.errors)} entries could not be restored, first: {summary.errors[0]}"
        )
    data = summary.to_dict()
    return {
        "snapshot_id": snap.id,
        "destination_path": target,
        "files": data.get("files"),
        "bytes_written": data.get("bytes_written"),
        "warnings": [str(w) for w in data.get("warnings", [])][:20],
    }


def forget_snapshots(settings: Any, snapshot_ids: list[str]) -> list[str]:
    """Forget those of ``snapshot_ids`` the repository has; the ones forgotten (gone ones count too)."""
    from cbr_agent.repoaccess.configured import open_repository

    if not snapshot_ids:
        return []
    repo = open_repository(settings)
    with repo.lock(exclusive=True):
        present = set(repo.snapshot_ids())
        for sid in snapshot_ids:
            if sid in present:
                repo.forget_snapshot(sid)
    return list(snapshot_ids)


def run_forget(
    ctx: Context, task: dict[str, Any], cancel: threading.Event, progress: Callable[[int], None]
) -> dict[str, Any]:
    ids = list((task.get("parameters") or {}).get("snapshot_ids") or [])
    return {"forgotten_snapshot_ids": forget_snapshots(ctx.settings(), ids)}


class _Ticker:
    """Renews the lease with the current progress every few seconds; a lost lease cancels the work."""

    def __init__(
        self, cp: Any, ctx: Context, info: dict[str, Any], owner: str, cancel: threading.Event
    ) -> None:
        self.cp, self.ctx, self.owner, self.cancel = cp, ctx, owner, cancel
        self.info, self.task_id = info, info["id"]
        self.progress = 0
        self.lost = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"task-{self.task_id[:8]}", daemon=True)

    def set(self, value: int) -> None:
        self.progress = max(self.progress, min(100, value))

    def __enter__(self) -> _Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        due = time.monotonic() + progress_seconds()
        while not self._done.wait(0.2):
            if self.ctx.stopping.is_set():
                self.cancel.set()  # the daemon stops: the work stops, the lease lapses, it is re-offered
            if time.monotonic() < due:
                continue
            due = time.monotonic() + progress_seconds()
            try:
                self.cp.cbr_call(
                    "POST",
                    ["agents", self.ctx.agent_id, "tasks", self.task_id, "progress"],
                    payload={
                        "owner": self.owner,
                        "progress": self.progress,
                        "lease_seconds": lease_seconds(),
                    },
                )
            except ApiError as exc:
                if exc.status == 409:
                    log.warning(
                        "task %s: the control plane gave it to another claim; stopping it", self.task_id
                    )
                    self.lost = True
                    self.cancel.set()
                    return
            except CbrAgentError as exc:  # unavailable: keep working, the lease may still hold
                log.debug("progress report failed: %s", exc)
            self.ctx.record({"task": {**self.info, "progress": self.progress}})


def _test_delay(cancel: threading.Event) -> None:
    """``CBR_AGENT_TEST_TASK_DELAY=S``: each task first waits S seconds (cancellable), so a test can kill
    an agent in the middle of a task."""
    delay = env_seconds("CBR_AGENT_TEST_TASK_DELAY", 0.0)
    if delay > 0 and cancel.wait(delay):
        raise Cancelled("stopped")


RUNNERS: dict[str, Callable[..., Any]] = {
    "backup": run_backup,
    "restore": run_restore,
    **{t: run_forget for t in FORGET_TYPES},
}


def execute(cp: Any, ctx: Context, task: dict[str, Any], owner: str) -> None:
    """Claim, run and report one task (the result goes through the outbox)."""
    agent_id, task_id, kind = ctx.agent_id, task["id"], task["operation_type"]
    try:
        cp.cbr_call(
            "POST",
            ["agents", agent_id, "tasks", task_id, "claim"],
            payload={"owner": owner, "lease_seconds": lease_seconds()},
        )
    except ApiError as exc:
        log.info("task %s not claimed: %s", task_id, exc)
        return
    log.info("task %s: %s started (attempt %s)", task_id, kind, task.get("attempts", 0) + 1)
    cancel = threading.Event()
    started = time.monotonic()
    info = {
        "id": task_id,
        "operation_type": kind,
        "progress": 0,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    ctx.record({"task": info})
    body: dict[str, Any] = {"owner": owner}
    runner = RUNNERS.get(kind)
    # the lease is renewed while this waits for a scheduled or policy backup to finish
    with _Ticker(cp, ctx, info, owner, cancel) as ticker, ctx.engine_lock:
        try:
            if runner is None:
                raise TaskFailed(f"this agent does not run {kind!r} tasks", "BackupService.6116")
            _test_delay(cancel)
            outcome = runner(ctx, task, cancel, ticker.set)
            if kind == "backup":
                result, backup = outcome
                body.update(status="success", result=result, backup=backup)
            else:
                body.update(status="success", result=outcome)
        except Cancelled:
            ctx.record({"task": None})
            log.info("task %s stopped before it finished; the control plane offers it again", task_id)
            return
        except TaskFailed as exc:
            body.update(status="failed", error={"code": exc.code, "message": str(exc)})
        except CbrAgentError as exc:
            body.update(status="failed", error={"code": "BackupService.9910", "message": str(exc)})
        except Exception as exc:  # a bug must end the task, not the worker
            log.error("task %s failed with an internal error", task_id, exc_info=True)
            body.update(
                status="failed",
                error={
                    "code": "BackupService.9910",
                    "message": f"internal error: {type(exc).__name__}: {exc}",
                },
            )
    if ticker.lost:
        ctx.record({"task": None})
        return
    body.setdefault("result", {})["seconds"] = round(time.monotonic() - started, 3)
    outbox.report_result(ctx.settings().state_dir, agent_id, task_id, body)
    ctx.record(
        {
            "task": None,
            "last_task": {
                "id": task_id,
                "operation_type": kind,
                "status": body["status"],
                "ended_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        }
    )
    log.info("task %s: %s %s", task_id, kind, body["status"])
