"""Reports for the control plane that must not be lost: the backups this host made, the snapshots
retention forgot, and task results. Each is a small JSON file in ``STATE_DIR/outbox/`` (written
atomically), sent in order and removed once the control plane took it, so a report made while the
control plane is away goes out when it is back (DESIGN.md decision 7).

Every report is idempotent on the server (a backup by its snapshot id, a result by task and owner),
so two senders (the daemon and a CLI run) or a lost answer never make a duplicate.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cbr_agent.agent.statefile import write_bytes_atomic
from cbr_agent.errors import ApiError, CbrAgentError, ControlPlaneUnavailable

log = logging.getLogger(__name__)

OUTBOX = "outbox"
#: statuses that say "this report will never be taken": drop it (and say so) rather than retry forever
_REFUSED = (400, 404, 409)
_counter = itertools.count()
_flush_lock = threading.Lock()


def outbox_dir(state_dir: Path) -> Path:
    return state_dir / OUTBOX


def put(state_dir: Path, kind: str, segments: list[str], payload: dict[str, Any]) -> Path:
    """Queue ``POST /v3/{project_id}/{segments}`` with ``payload``."""
    name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}-{kind}.json"
    path = outbox_dir(state_dir) / name
    body = {"kind": kind, "segments": segments, "payload": payload}
    write_bytes_atomic(path, json.dumps(body).encode(), mode=0o600)
    return path


def pending(state_dir: Path) -> list[Path]:
    try:
        return sorted(p for p in outbox_dir(state_dir).iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        return []


def flush(state_dir: Path, cp: Any) -> int:
    """Send what is queued, oldest first; stop at the first "unavailable". Returns how many left."""
    with _flush_lock:
        for path in pending(state_dir):
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue  # another sender took it
            except (OSError, ValueError) as exc:
                log.warning("dropping damaged outbox entry %s: %s", path.name, exc)
                path.unlink(missing_ok=True)
                continue
            try:
                cp.cbr_call("POST", entry["segments"], payload=entry["payload"])
            except ControlPlaneUnavailable:
                break
            except ApiError as exc:
                if exc.status not in _REFUSED:
                    break
                log.warning("the control plane refused the %s report (%s); dropping it", entry["kind"], exc)
            except CbrAgentError as exc:
                log.debug("outbox flush stopped: %s", exc)
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return len(pending(state_dir))


def backup_report(
    summary: Any,
    *,
    agent_id: str,
    trigger: str,
    auto: bool,
    policy_id: str | None = None,
    vault_id: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The ``POST /agents/{agent_id}/backups`` body for a snapshot this host made."""
    data = summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)
    backup: dict[str, Any] = {
        "snapshot_id": getattr(summary, "snapshot_id", None) or data.get("snapshot_id"),
        "auto_trigger": auto,
        "trigger": trigger,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size_bytes": int(data.get("bytes_total") or 0),
        "added_bytes": int(data.get("bytes_added") or 0),
        "files": sum(int(data.get(k) or 0) for k in ("files_new", "files_changed", "files_unchanged")),
        "duration": round(float(data.get("duration") or 0.0), 3),
        "warnings": len(data.get("warnings") or []),
        "incremental": bool(data.get("parent")),
        "host": socket.gethostname(),
    }
    for key, value in (("policy_id", policy_id), ("vault_id", vault_id), ("name", name)):
        if value:
            backup[key] = value
    return {"backup": backup}


def report_backup(state_dir: Path, agent_id: str, body: dict[str, Any]) -> Path:
    return put(state_dir, "backup", ["agents", agent_id, "backups"], body)


def report_forgotten(state_dir: Path, agent_id: str, snapshot_ids: list[str]) -> Path:
    return put(
        state_dir, "forgotten", ["agents", agent_id, "backups", "forgotten"], {"snapshot_ids": snapshot_ids}
    )


def report_result(state_dir: Path, agent_id: str, task_id: str, body: dict[str, Any]) -> Path:
    return put(state_dir, "result", ["agents", agent_id, "tasks", task_id, "result"], body)


def send_now(settings: Any) -> int:
    """One flush with a control plane of its own (the CLI, the local schedule): best effort, quiet."""
    from cbr_agent.agent.connect import open_control_plane

    if not pending(settings.state_dir):
        return 0
    try:
        cp = open_control_plane(settings, max_attempts=1)
    except CbrAgentError as exc:
        log.debug("not reporting now: %s", exc)
        return len(pending(settings.state_dir))
    try:
        return flush(settings.state_dir, cp)
    finally:
        cp.close()
