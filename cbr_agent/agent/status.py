"""``cbr-agent status``: what the state dir says, whether or not the daemon runs. No secrets, no network."""

from __future__ import annotations

from typing import Any

from cbr_agent.agent.connect import describe_endpoint
from cbr_agent.agent.identity import peek_agent_id
from cbr_agent.agent.state import load_agent_state, load_paths, paths_to_json, running_pid
from cbr_agent.agent.statefile import CorruptStateFile
from cbr_agent.config import Settings


def collect_status(settings: Settings) -> dict[str, Any]:
    state_dir = settings.state_dir
    state = load_agent_state(state_dir)
    agent_id = settings.agent_id or peek_agent_id(state_dir)
    pid = running_pid(state_dir)
    same_agent = state.get("agent_id") == agent_id
    try:
        cache = load_paths(state_dir)
        cache_note = None
    except CorruptStateFile as exc:
        cache, cache_note = None, f"{exc}; the next sync rebuilds it"
    paths = cache.paths if cache is not None and cache.agent_id == agent_id else ()
    # a running daemon may have been started with other settings (flags, its own environment)
    running = bool(pid) and same_agent
    schedule = state.get("backup_schedule") if running else settings.backup_schedule
    return {
        "agent_id": agent_id,
        "endpoint": state.get("endpoint") if running and state.get("endpoint")
        else describe_endpoint(settings),
        "project_id": settings.project_id,
        "config_file": str(settings.config_file),
        "config_file_present": settings.config_file.is_file(),
        "state_dir": str(state_dir),
        "daemon": {"running": pid is not None, "pid": pid if pid and pid > 0 else None},
        "registered": bool(same_agent and state.get("registered")),
        "agent_status": state.get("agent_status") if same_agent else None,
        "control_plane": state.get("control_plane") if pid else None,
        "last_heartbeat": state.get("last_heartbeat") if same_agent else None,
        "last_error": state.get("last_error") if same_agent else None,
        "paths": paths_to_json(paths),
        "paths_synced_at": cache.synced_at if cache is not None else None,
        "paths_note": cache_note,
        "backup_schedule": schedule,
        "backup_running": bool(running and state.get("backup_running")),
        "backup_waiting": state.get("backup_waiting") if running else None,
        "last_reload": state.get("last_reload") if running else None,
        "last_backup": state.get("last_backup"),
        "journal": state.get("journal") if running else None,
        "next_backup": state.get("next_backup") if running and schedule else None,
        # CBR work (issue 12): the task running now, the last one, the cached policy's next run
        "task": state.get("task") if running else None,
        "last_task": state.get("last_task") if same_agent else None,
        "next_policy_backup": state.get("next_policy_backup") if running else None,
    }


def print_status(report: dict[str, Any]) -> None:
    daemon = report["daemon"]
    rows = [
        ("agent id", report["agent_id"] or "none yet (run 'cbr-agent register' or 'cbr-agent run')"),
        ("daemon", f"running (pid {daemon['pid']})" if daemon["running"] else "not running"),
        ("control plane", report["endpoint"] + (f" ({report['control_plane']})"
                                               if report["control_plane"] else "")),
        ("project", report["project_id"]),
        ("registered", "yes" + (f", status {report['agent_status']}" if report["agent_status"] else "")
         if report["registered"] else "no"),
        ("last heartbeat", report["last_heartbeat"] or "never"),
    ]
    error = report["last_error"]
    if error:
        rows.append(("last error", f"{error.get('message')} (at {error.get('at')})"))
    reload = report["last_reload"]
    if reload and reload.get("status") == "refused":
        rows.append(("config reload", f"REFUSED at {reload.get('at')}: {reload.get('reason')}"))
    present = report.get("config_file_present", True)
    rows.append(("config file", report["config_file"] + ("" if present else " (not present: defaults "
                                                                            "and environment only)")))
    rows.append(("state dir", report["state_dir"]))
    rows.append(("backup schedule", report["backup_schedule"] or "none (backups run on demand)"))
    rows.append(("last backup", _describe_backup(report["last_backup"])))
    if report["backup_waiting"]:
        rows.append(("backup", f"waiting: {report['backup_waiting']}"))
    elif report["backup_running"]:
        rows.append(("backup", "running now"))
    if report["next_backup"]:
        rows.append(("next backup", report["next_backup"]))
    journal = report.get("journal")
    if journal:
        rows.append(("change journal", _describe_journal(journal)))
    rows += _task_rows(report)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name + ':':<{width + 1}} {value}")
    paths = report["paths"]
    synced = f" (synced {report['paths_synced_at']})" if report["paths_synced_at"] else ""
    print(f"paths{synced}:" if paths else "paths: none (add one with 'cbr-agent path add DIR')")
    for path in paths:
        excludes = f"  excluding {', '.join(path['excludes'])}" if path["excludes"] else ""
        print(f"  {path['dir_path']}{excludes}")
    if report["paths_note"]:
        print(f"note: {report['paths_note']}")


def _task_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    task = report.get("task")
    if task:
        rows.append(("task", f"{task.get('operation_type', 'task')} {task.get('id')} running, "
                             f"{task.get('progress', 0)}% (since {task.get('started_at')})"))
    last = report.get("last_task")
    if last:
        rows.append(("last task", f"{last.get('operation_type')} {last.get('id')}: {last.get('status')}"))
    if report.get("next_policy_backup"):
        rows.append(("next policy backup", report["next_policy_backup"]))
    return rows


def _describe_backup(backup: dict[str, Any] | None) -> str:
    if not backup:
        return "never"
    text = f"{backup.get('status')} at {backup.get('finished_at')}"
    if backup.get("snapshot_id"):  # people see the short form (cli.output.short_id); --json the full id
        text += f", snapshot {str(backup['snapshot_id'])[:8]}"
    if backup.get("duration") is not None:
        text += f", {backup['duration']:.2f} s"
    if backup.get("scan"):
        text += ", full scan" if backup["scan"] == "full" else ", journal scan (changed directories only)"
    if backup.get("error"):
        text += f": {backup['error']}"
    return text


def _describe_journal(journal: dict[str, Any]) -> str:
    if not journal.get("watching"):
        return "off (every backup scans all files)"
    text = f"watching {journal.get('paths', 0)} path(s)"
    below = journal.get("full_scan_below") or []
    if below:
        text += f"; always scanned fully: {', '.join(below[:3])}" + (" ..." if len(below) > 3 else "")
    if journal.get("note"):
        text += f" ({journal['note']})"
    return text
