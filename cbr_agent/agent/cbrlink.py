"""Wires the CBR work into the daemon with a few lines there: the task worker, the policy runner,
and the reporting of the local schedule's backups (every snapshot is a CBR backup)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from cbr_agent.agent import outbox
from cbr_agent.agent.policyrun import PolicyRunner
from cbr_agent.agent.taskrun import Context
from cbr_agent.agent.tasks import TaskWorker, load_config
from cbr_agent.errors import CbrAgentError

log = logging.getLogger("cbr_agent.agent")


class CbrWork:
    """The threads that carry out CBR work for one daemon; one engine lock for all its backups."""

    def __init__(self, daemon: Any) -> None:
        self.engine_lock = threading.Lock()
        self.ctx = Context(settings=lambda: daemon._for_job(daemon.settings), agent_id=daemon.agent_id,
                           paths=lambda: daemon._paths, record=daemon._record,
                           engine_lock=self.engine_lock, stopping=daemon._stopping)
        self.policy = PolicyRunner(self.ctx)
        self.worker = TaskWorker(self.ctx, daemon._open_cp, on_config=self.policy.poke)

    def start(self) -> CbrWork:
        self.worker.start()
        self.policy.start()
        return self

    def join(self, timeout: float) -> None:
        self.policy.join(timeout / 2)
        self.worker.join(timeout / 2)

    def reporting_job(self, factory: Callable[[], Callable[..., Any]]) -> Callable[[], Callable[..., Any]]:
        """The local schedule's job, serialized with task and policy backups, each snapshot reported."""

        def make() -> Callable[..., Any]:
            job = factory()

            def run(settings: Any, paths: Any, **kwargs: Any) -> Any:
                with self.engine_lock:
                    summary = job(settings, paths, **kwargs)
                report_local_backup(settings, summary, trigger="schedule", auto=True)
                return summary

            return run

        return make


def report_local_backup(settings: Any, summary: Any, *, trigger: str, auto: bool) -> None:
    """Queue a backup made on this host (schedule or CLI) and try to send it now."""
    from cbr_agent.agent.identity import peek_agent_id

    snapshot_id = getattr(summary, "snapshot_id", None)
    agent_id = settings.agent_id or peek_agent_id(settings.state_dir)
    if not snapshot_id or not agent_id:
        return
    try:
        vault = (load_config(settings.state_dir).get("config") or {}).get("vault") or {}
        body = outbox.backup_report(summary, agent_id=agent_id, trigger=trigger, auto=auto,
                                    vault_id=vault.get("id"))
        outbox.report_backup(settings.state_dir, agent_id, body)
        outbox.send_now(settings)
    except CbrAgentError as exc:  # the backup is made; the report waits in the outbox (or cannot be kept)
        log.debug("backup report not sent: %s", exc)
    except Exception:  # a report must never turn a good backup into a failed one
        log.warning("could not queue the report of snapshot %s", snapshot_id, exc_info=True)
