"""``register``, ``run``, ``status`` and ``uninstall``: the agent's own life on this host."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cbr_agent.cli.durations import add_retry_lock

#: register's flags that are written to the config file, by config key
_CONFIG_FLAGS = ("endpoint", "project_id", "ak", "agent_id", "agent_type", "host_nickname",
                 "heartbeat_interval", "ca_bundle", "credentials_file", "sk_file", "token_file",
                 "backup_schedule")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    reg = subparsers.add_parser(
        "register", parents=[common], help="write the configuration and register with the control plane",
        description="Register this host with the control plane and write what was given to the config "
        "file (secrets from CBR_AGENT_SK/CBR_AGENT_TOKEN go to a credentials file, mode 0600). Running it "
        "again is harmless.")
    _control_plane_flags(reg)
    reg.add_argument("--agent-type", choices=("native", "cloud"), help="agent type (default native)")
    reg.add_argument("--host-nickname", metavar="NAME", help="host alias shown on the control plane")
    reg.add_argument("--heartbeat-interval", metavar="SECONDS", help="seconds between heartbeats")
    reg.add_argument("--ca-bundle", metavar="FILE", help="CA certificates for the endpoint's TLS")
    reg.add_argument("--credentials-file", metavar="FILE", help="TOML file holding ak/sk or token")
    reg.add_argument("--sk-file", metavar="FILE", help="file holding the secret key")
    reg.add_argument("--token-file", metavar="FILE", help="file holding the IAM token")
    reg.add_argument("--backup-schedule", metavar="WHEN", help="'6h', '30m' or 'daily 02:30'")
    reg.add_argument("--json", action="store_true", help="print the result as JSON")
    _refused_secret_flags(reg)
    reg.set_defaults(func=cmd_register)

    run = subparsers.add_parser(
        "run", parents=[common], help="run the agent daemon (or one round with --once)",
        description="Register, heartbeat, follow the path list and run scheduled backups until "
        "SIGTERM/SIGINT; SIGHUP reloads the config file, SIGUSR1 syncs with the control plane now.")
    run.add_argument("--once", action="store_true",
                     help="register, sync the path list, back up the paths once, then exit")
    _control_plane_flags(run)
    run.add_argument("--heartbeat-interval", metavar="SECONDS", help="seconds between heartbeats")
    add_retry_lock(run, "with --once: ")
    _refused_secret_flags(run)
    run.set_defaults(func=cmd_run)

    status = subparsers.add_parser(
        "status", parents=[common], help="show the agent's state (works with or without the daemon)",
        description="Agent id, control plane, registration, last heartbeat and error, paths, last and "
        "next backup, and whether the daemon is running. Reads the state dir only.")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=cmd_status)

    uninstall = subparsers.add_parser(
        "uninstall", parents=[common], help="mark the agent uninstalled on the control plane",
        description="Mark this agent 'uninstall' on the control plane; with --remove, delete it there, "
        "which also deletes all of its backups on the control plane: it asks first on a terminal, "
        "and needs --yes otherwise.")
    uninstall.add_argument("--remove", action="store_true",
                           help="delete the agent and ALL ITS BACKUPS on the control plane")
    uninstall.add_argument("--yes", "-y", action="store_true",
                           help="do not ask before --remove (required when not on a terminal)")
    uninstall.add_argument("--json", action="store_true", help="print the result as JSON")
    uninstall.set_defaults(func=cmd_uninstall)


def _control_plane_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", metavar="URL", help="control plane URL (none: embedded)")
    parser.add_argument("--project-id", metavar="ID", help="project id")
    parser.add_argument("--ak", metavar="AK", help="access key (its secret: CBR_AGENT_SK or --sk-file)")
    parser.add_argument("--agent-id", metavar="UUID", help="use this agent id")


def _refused_secret_flags(parser: argparse.ArgumentParser) -> None:
    # accepted only to refuse them with a useful message: a secret on the command line lands in `ps`
    for name in ("--sk", "--token", "--security-token", "--password"):
        parser.add_argument(name, dest=f"refused_{name[2:].replace('-', '_')}", help=argparse.SUPPRESS)


def _check_refused(args: argparse.Namespace) -> None:
    from cbr_agent.errors import UsageError

    for name, value in vars(args).items():
        if name.startswith("refused_") and value is not None:
            key = name[len("refused_"):]
            raise UsageError(f"--{key.replace('_', '-')} is not accepted: a secret on the command line "
                             "is visible to every user in 'ps'",
                             hint=f"use CBR_AGENT_{key.upper()} or a file "
                             "(--credentials-file, --sk-file, --token-file)")


def _flag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key, None) for key in _CONFIG_FLAGS}


# -- register -----------------------------------------------------------------------------------


def cmd_register(args: argparse.Namespace) -> int:
    from cbr_agent.agent.configfile import persist_registration
    from cbr_agent.agent.connect import describe_endpoint
    from cbr_agent.agent.heartbeat import Syncer, registration_record
    from cbr_agent.agent.identity import load_identity
    from cbr_agent.agent.state import save_paths, update_agent_state
    from cbr_agent.cli.context import settings_from_args
    from cbr_agent.cli.output import print_json

    _check_refused(args)
    flags = _flag_overrides(args)
    _create_chosen_config(args)
    settings = settings_from_args(args, **flags)
    identity = load_identity(settings.state_dir, pinned=settings.agent_id)
    syncer = Syncer(settings, identity.agent_id)
    try:
        result = syncer.sync()
    finally:
        syncer.close()
    save_paths(settings.state_dir, identity.agent_id, result.paths)
    update_agent_state(settings.state_dir, {**registration_record(settings, result), "last_error": None})
    written = persist_registration(settings, {k: v for k, v in flags.items() if v is not None})
    agent = result.agent
    if args.json:
        print_json({"agent_id": agent.agent_id, "endpoint": describe_endpoint(settings),
                    "project_id": settings.project_id, "status": agent.status,
                    "host_name": agent.host_name, "host_ip": agent.host_ip,
                    "config_file": str(settings.config_file), "config_changed": written.config_changed,
                    "credentials_file": str(written.credentials_file) if written.credentials_file
                    else None, "paths": len(result.paths)})
        return 0
    print(f"registered agent {agent.agent_id} ({agent.host_name}, {agent.host_ip}) with "
          f"{describe_endpoint(settings)}, status {agent.status}")
    if written.config_changed:
        print(f"wrote configuration to {settings.config_file}")
    else:
        print(f"configuration {settings.config_file} already up to date")
    if written.credentials_file:
        print(f"wrote credentials to {written.credentials_file} (mode 0600)")
    return 0


def _create_chosen_config(args: argparse.Namespace) -> None:
    """``register --config NEW`` writes that file, so it need not exist yet (other commands refuse)."""
    import os
    from pathlib import Path

    chosen = getattr(args, "config", None) or os.environ.get("CBR_AGENT_CONFIG")
    if chosen and not Path(chosen).exists():
        from cbr_agent.agent.statefile import write_bytes_atomic
        from cbr_agent.errors import ConfigError, StateError

        try:
            write_bytes_atomic(Path(chosen), b"", mode=0o644)
        except StateError as exc:
            raise ConfigError(f"cannot create config file {chosen}: {exc}") from None


# -- run ----------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from cbr_agent.cli.context import settings_from_args

    _check_refused(args)
    flags = {k: getattr(args, k, None) for k in ("endpoint", "project_id", "ak", "agent_id",
                                                  "heartbeat_interval")}
    settings = settings_from_args(args, **flags)
    if args.once:
        return _run_once(settings, _waiting_job(args.retry_lock) if args.retry_lock else None)
    if args.retry_lock:
        from cbr_agent.errors import UsageError

        raise UsageError("--retry-lock goes with --once; the daemon itself retries a scheduled backup "
                         "that finds the repository locked, until its next run")
    from cbr_agent.agent.daemon import Daemon

    return Daemon(settings, reload=lambda: settings_from_args(args, **flags)).run()


def _waiting_job(lock_wait: float) -> Any:
    """The backup engine's entry point, waiting up to ``lock_wait`` s for a locked repository."""
    import functools

    from cbr_agent.agent.scheduler import default_job

    return lambda: functools.partial(default_job(), lock_wait=lock_wait)


def _run_once(settings: Any, job: Any = None) -> int:
    """``run --once`` and what it prints; ``job`` replaces the backup engine's entry point."""
    from cbr_agent.agent.connect import describe_endpoint
    from cbr_agent.agent.once import run_once
    from cbr_agent.cli import exitcodes

    result = run_once(settings) if job is None else run_once(settings, job=job)
    if result.offline is None:
        print(f"agent {result.agent_id} registered with {describe_endpoint(settings)}")
    if result.backup is None:
        print("no backup paths configured, nothing to back up; add one with "
              "'cbr-agent path add /some/dir' and run 'cbr-agent run --once' again "
              "(or start the daemon with 'cbr-agent run')")
        return 0
    from cbr_agent.cli.output import plural, short_id

    outcome = result.backup
    print(f"backed up {plural(len(result.paths), 'path')}: snapshot {short_id(outcome.get('snapshot_id'))} "
          f"in {outcome.get('seconds')}s")
    if outcome.get("status") == "warnings":
        print(f"{plural(int(outcome.get('warnings') or 0), 'warning')}: some files could not be read "
              "(see the log above)", file=sys.stderr)
    if result.offline is not None:
        print(f"error: the control plane is unavailable: {result.offline}; backed up the paths cached at "
              f"{result.synced_at}, but the heartbeat and the path sync did not happen (exit 4)",
              file=sys.stderr)
        return exitcodes.UNAVAILABLE
    return exitcodes.WARNINGS if outcome.get("status") == "warnings" else exitcodes.OK


# -- status -------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from cbr_agent.agent.status import collect_status, print_status
    from cbr_agent.cli.context import settings_from_args
    from cbr_agent.cli.output import print_json

    settings = settings_from_args(args)
    report = collect_status(settings)
    if args.json:
        print_json(report)
    else:
        print_status(report)
    return 0


# -- uninstall ----------------------------------------------------------------------------------


def _confirm_remove(agent_id: str, endpoint: str) -> None:
    """Deleting an agent deletes its backups on the control plane: a person on a terminal is asked
    (default no); a script must say --yes."""
    from cbr_agent.errors import CbrAgentError, UsageError

    if not sys.stdin.isatty():
        raise UsageError("uninstall --remove deletes the agent and ALL ITS BACKUPS on the control plane "
                         "and is not on a terminal to ask", hint="add --yes to confirm")
    sys.stderr.write(f"Delete agent {agent_id} and ALL ITS BACKUPS on {endpoint}? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise CbrAgentError(f"not confirmed; agent {agent_id} and its backups were left as they are")


def cmd_uninstall(args: argparse.Namespace) -> int:
    from cbr_agent.agent.connect import describe_endpoint, open_control_plane
    from cbr_agent.agent.identity import peek_agent_id
    from cbr_agent.agent.state import PATHS_FILE, running_pid, update_agent_state, utc_now
    from cbr_agent.cli.context import settings_from_args
    from cbr_agent.cli.output import print_json
    from cbr_agent.errors import StateError

    settings = settings_from_args(args)
    agent_id = settings.agent_id or peek_agent_id(settings.state_dir)
    if agent_id is None:
        raise StateError(f"no agent id in {settings.state_dir}: this host was never registered",
                         hint="nothing to uninstall; check --state-dir")
    if args.remove and not args.yes:
        _confirm_remove(agent_id, describe_endpoint(settings))
    pid = running_pid(settings.state_dir)
    if pid:
        print(f"warning: the daemon (pid {pid}) is still running; its next heartbeat registers the "
              "agent again (stop it first: systemctl stop cbr-agent)", file=sys.stderr)
    cp = open_control_plane(settings)
    try:
        if args.remove:
            print(f"warning: deleting agent {agent_id} from {describe_endpoint(settings)}; this deletes "
                  "all of its backups on the control plane", file=sys.stderr)
            cp.remove_agent(agent_id)
            status = "removed"
        else:
            status = cp.update_agent(agent_id, "uninstall").status or "uninstall"
    finally:
        cp.close()
    changes: dict[str, Any] = {"agent_status": status, "uninstalled_at": utc_now()}
    if args.remove:
        changes["registered"] = False
        (settings.state_dir / PATHS_FILE).unlink(missing_ok=True)
    update_agent_state(settings.state_dir, changes)
    if args.json:
        print_json({"agent_id": agent_id, "status": status, "endpoint": describe_endpoint(settings)})
    elif args.remove:
        print(f"agent {agent_id} deleted from {describe_endpoint(settings)}, with its backups there")
    else:
        print(f"agent {agent_id} marked '{status}' on {describe_endpoint(settings)}")
    return 0
