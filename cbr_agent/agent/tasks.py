"""The daemon's side of CBR tasks: long-poll for work and hand each task to
:func:`cbr_agent.agent.taskrun.execute`.

One worker thread (:class:`TaskWorker`) holds a long poll on
``GET /v3/{project_id}/agents/{agent_id}/tasks`` (answered at once when work exists, else after
``wait`` seconds); each task is claimed with a lease, renewed by progress reports every few seconds,
run, and its result queued in the outbox (:mod:`cbr_agent.agent.outbox`) so that it survives a
control-plane outage. A lease that the control plane says is lost (409) cancels the work.

The same poll carries the agent's vault and policy (``config``), which is cached in the state dir
for :mod:`cbr_agent.agent.policyrun`, so a policy keeps running while the control plane is away.

Tuning for tests and large fleets: :mod:`cbr_agent.agent.tuning`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cbr_agent.agent import outbox
from cbr_agent.agent.statefile import write_bytes_atomic
from cbr_agent.agent.taskrun import Context, execute
from cbr_agent.agent.tuning import poll_wait
from cbr_agent.errors import CbrAgentError, ControlPlaneUnavailable

log = logging.getLogger("cbr_agent.agent.tasks")

CONFIG_FILE = "cbr-config.json"


# -- the cached configuration (vault and policy) ---------------------------------------------------


def load_config(state_dir: Path) -> dict[str, Any]:
    """``{"config_version", "config": {"vault", "policy"}}`` as last seen, or empty."""
    try:
        data = json.loads((state_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_config(state_dir: Path, version: str, config: dict[str, Any]) -> None:
    body = {"config_version": version, "config": config}
    write_bytes_atomic(state_dir / CONFIG_FILE, json.dumps(body, indent=1).encode(), mode=0o600)


# -- the worker thread -----------------------------------------------------------------------------


class TaskWorker:
    """Long-polls for tasks and runs them one at a time; flushes the outbox between polls."""

    def __init__(
        self,
        ctx: Context,
        open_cp: Callable[[Any], Any],
        on_config: Callable[[dict[str, Any]], None] = lambda config: None,
    ) -> None:
        self.ctx = ctx
        self._open_cp = open_cp
        self._on_config = on_config
        self.owner = f"{ctx.agent_id}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._thread = threading.Thread(target=self._run, name="tasks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        cp = None
        state_dir = self.ctx.settings().state_dir
        while not self.ctx.stopping.is_set():
            try:
                if cp is None:
                    cp = self._open_cp(self.ctx.settings())
                outbox.flush(state_dir, cp)
                answer = self._poll(cp)
                failures = 0
            except CbrAgentError as exc:
                failures += 1
                delay = min(30.0, 0.5 * 2 ** min(failures, 6))
                (log.info if failures == 1 else log.debug)(
                    "task poll failed (%s); retrying in %.1fs", exc, delay
                )
                if not isinstance(exc, ControlPlaneUnavailable) and cp is not None:
                    with contextlib.suppress(Exception):
                        cp.close()
                    cp = None
                self.ctx.stopping.wait(delay)
                continue
            self._configure(answer)
            for task in answer.get("tasks") or ():
                if self.ctx.stopping.is_set():
                    break
                execute(cp, self.ctx, task, self.owner)
            with contextlib.suppress(CbrAgentError):
                outbox.flush(state_dir, cp)
        if cp is not None:
            with contextlib.suppress(Exception):
                cp.close()

    def _poll(self, cp: Any) -> dict[str, Any]:
        known = load_config(self.ctx.settings().state_dir).get("config_version")
        wait = poll_wait() if self.ctx.settings().endpoint else min(poll_wait(), 2.0)
        query = [("wait", f"{wait:g}")] + ([("config_version", known)] if known else [])
        return dict(
            cp.cbr_call(
                "GET", ["agents", self.ctx.agent_id, "tasks"], query=query, read_timeout=wait + 15.0
            )
        )

    def _configure(self, answer: dict[str, Any]) -> None:
        version, config = answer.get("config_version"), answer.get("config")
        state_dir = self.ctx.settings().state_dir
        if (
            not version
            or not isinstance(config, dict)
            or version == load_config(state_dir).get("config_version")
        ):
            return
        save_config(state_dir, version, config)
        policy = config.get("policy") or {}
        log.info(
            "vault %s, policy %s", (config.get("vault") or {}).get("id", "none"), policy.get("id", "none")
        )
        self._on_config(config)
