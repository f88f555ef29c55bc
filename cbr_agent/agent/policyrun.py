"""The CBR policy bound to this agent's vault, run on the host from the cached copy (DESIGN.md
decision 4): a control-plane outage never skips a backup. After each policy backup the policy's
retention forgets this agent's older *automatic* backups (a ledger in the state dir says which
snapshots those are; manual ones are never touched), prunes at most once a day, and reports the
new backup and the removed ones through the outbox.

A run missed while the daemon was down is made up once when it starts again. For tests,
``CBR_AGENT_TEST_POLICY_SECONDS=N`` replaces the trigger with "every N seconds".
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cbr_agent import cbrpolicy
from cbr_agent.agent import outbox
from cbr_agent.agent.statefile import write_bytes_atomic
from cbr_agent.agent.taskrun import Context, forget_snapshots
from cbr_agent.agent.tasks import load_config
from cbr_agent.errors import Cancelled, CbrAgentError

log = logging.getLogger("cbr_agent.agent.policy")

LEDGER = "policy-backups.json"
PRUNE_EVERY = timedelta(days=1)
IDLE_CHECK = 60.0

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _parse(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def load_ledger(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / LEDGER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.setdefault("backups", [])
    return data


def save_ledger(state_dir: Path, ledger: dict[str, Any]) -> None:
    write_bytes_atomic(state_dir / LEDGER, json.dumps(ledger, indent=1).encode(), mode=0o600)


def test_interval() -> float | None:
    raw = os.environ.get("CBR_AGENT_TEST_POLICY_SECONDS")
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


def next_due(policy: dict[str, Any], ledger: dict[str, Any], now: datetime) -> datetime:
    """When the policy fires next, from the last run (or from when this agent first saw it)."""
    since = _parse(ledger.get("last_run")) or _parse(ledger.get("seen_at")) or now
    interval = test_interval()
    if interval:
        return since + timedelta(seconds=interval)
    props = (policy.get("trigger") or {}).get("properties") or {}
    rules = cbrpolicy.parse_patterns(props.get("pattern"))
    start = _parse(props.get("start_time")) or since
    return cbrpolicy.next_run(rules, since, start)


class PolicyRunner:
    """A thread that fires the cached policy's backups and applies its retention."""

    def __init__(self, ctx: Context, clock: Clock = utc_now) -> None:
        self.ctx = ctx
        self.clock = clock
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self, config: Any = None) -> None:
        self._wake.set()

    def join(self, timeout: float) -> None:
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self.ctx.stopping.is_set():
            try:
                delay = self.step()
            except CbrAgentError as exc:
                log.warning("policy: %s", exc)
                delay = IDLE_CHECK
            except Exception:
                log.error("policy runner failed; trying again in a minute", exc_info=True)
                delay = IDLE_CHECK
            self._wake.wait(max(0.05, delay))
            self._wake.clear()

    def step(self) -> float:
        """Fire the policy if it is due; the seconds until it is worth looking again."""
        state_dir = self.ctx.settings().state_dir
        config = load_config(state_dir).get("config") or {}
        policy = config.get("policy")
        ledger = load_ledger(state_dir)
        now = self.clock()
        if not policy or not policy.get("enabled", True):
            return IDLE_CHECK
        if ledger.get("policy_id") != policy.get("id"):
            ledger.update(policy_id=policy.get("id"), seen_at=now.isoformat(), last_run=None)
            save_ledger(state_dir, ledger)
        due = next_due(policy, ledger, now)
        if due > now:
            self.ctx.record({"next_policy_backup": due.isoformat(timespec="seconds")})
            return min((due - now).total_seconds(), IDLE_CHECK)
        self.fire(policy, (config.get("vault") or {}).get("id"))
        return 0.05

    def fire(self, policy: dict[str, Any], vault_id: str | None) -> None:
        from cbr_agent.backup.run import RunOptions, backup_paths

        settings = self.ctx.settings()
        state_dir = settings.state_dir
        started = self.clock()
        paths = self.ctx.paths()
        summary = None
        if not paths:
            log.warning("policy %s is due but this agent has no backup paths", policy.get("id"))
        else:
            log.info("policy %s: backup starting", policy.get("id"))
            cancel = threading.Event()
            try:
                with self.ctx.engine_lock:
                    if self.ctx.stopping.is_set():
                        return
                    summary = backup_paths(settings, list(paths), RunOptions(cancel=cancel))
            except Cancelled:
                return
            except CbrAgentError as exc:
                log.error("policy %s: backup failed: %s", policy.get("id"), exc)
        ledger = load_ledger(state_dir)
        ledger["last_run"] = started.isoformat()
        if summary is not None and summary.snapshot_id:
            body = outbox.backup_report(summary, agent_id=self.ctx.agent_id, trigger="policy", auto=True,
                                        policy_id=policy.get("id"), vault_id=vault_id)
            outbox.report_backup(state_dir, self.ctx.agent_id, body)
            ledger["backups"].append({"snapshot_id": summary.snapshot_id, "time": started.isoformat(),
                                      "policy_id": policy.get("id")})
            log.info("policy %s: snapshot %s saved", policy.get("id"), summary.snapshot_id[:16])
            self._retain(policy, ledger)
        save_ledger(state_dir, ledger)
        outbox.send_now(settings)

    def _retain(self, policy: dict[str, Any], ledger: dict[str, Any]) -> None:
        definition = policy.get("operation_definition") or {}
        now = self.clock()
        gone = cbrpolicy.to_forget(ledger["backups"], lambda b: _parse(b["time"]) or now, definition, now)
        if not gone:
            return
        ids = [b["snapshot_id"] for b in gone]
        settings = self.ctx.settings()
        with self.ctx.engine_lock:
            forget_snapshots(settings, ids)
            last_prune = _parse(ledger.get("last_prune"))
            if last_prune is None or now - last_prune >= PRUNE_EVERY:
                from cbr_agent.repoaccess.configured import open_repository
                from cbr_agent.repository.prune import prune

                repo = open_repository(settings)
                with repo.lock(exclusive=True):
                    prune(repo)
                ledger["last_prune"] = now.isoformat()
        ledger["backups"] = [b for b in ledger["backups"] if b["snapshot_id"] not in set(ids)]
        outbox.report_forgotten(settings.state_dir, self.ctx.agent_id, ids)
        log.info("policy %s: retention forgot %d backup(s)", policy.get("id"), len(ids))
