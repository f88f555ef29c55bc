"""How often the agent polls for CBR work and renews task leases, from the environment (tests use
short values): ``CBR_AGENT_TASK_POLL_WAIT`` (seconds a poll may wait, default 50),
``CBR_AGENT_TASK_LEASE_SECONDS`` (default 60), ``CBR_AGENT_TASK_PROGRESS_SECONDS`` (progress and
lease renewal, default 5, at most 5)."""

from __future__ import annotations

import os


def env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def poll_wait() -> float:
    return env_seconds("CBR_AGENT_TASK_POLL_WAIT", 50.0)


def lease_seconds() -> float:
    return env_seconds("CBR_AGENT_TASK_LEASE_SECONDS", 60.0)


def progress_seconds() -> float:
    return min(5.0, env_seconds("CBR_AGENT_TASK_PROGRESS_SECONDS", 5.0))
