"""``path add/remove/list``: the agent's backup paths and excludes, kept on the control plane.

The daemon follows the same list (it syncs after every heartbeat; a running daemon is nudged with
SIGUSR1 to sync at once).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    path = subparsers.add_parser("path", parents=[common], help="manage backup paths and excludes",
                                 description="Backup paths and their excludes, kept on the control plane.")
    sub = path.add_subparsers(dest="path_command", metavar="ACTION", required=True)
    add = sub.add_parser(
        "add", parents=[common], help="add paths (or update the excludes of existing ones)",
        description="Add backup paths. A relative path is made absolute against the current directory. "
        "An exclude is an absolute path inside a backup path (that subtree is skipped), or a glob: "
        "without '/' it matches a name at any depth ('*.tmp', 'node_modules'), with '/' it matches "
        "relative to the backup path ('build/*.o'); '**' crosses directories.")
    add.add_argument("paths", nargs="+", metavar="PATH", help="directory or file to back up")
    add.add_argument("--exclude", "-e", action="append", default=[], metavar="PATTERN",
                     help="exclude (repeatable)")
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    add.set_defaults(func=cmd_add)
    remove = sub.add_parser("remove", parents=[common], help="remove paths")
    remove.add_argument("paths", nargs="+", metavar="PATH", help="a backup path to remove")
    remove.add_argument("--json", action="store_true", help="print the result as JSON")
    remove.set_defaults(func=cmd_remove)
    listing = sub.add_parser("list", parents=[common], help="list paths and their excludes")
    listing.add_argument("--json", action="store_true", help="print the list as JSON")
    listing.set_defaults(func=cmd_list)
    _register_exclude(sub, common)


def _register_exclude(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    exclude = sub.add_parser(
        "exclude", parents=[common], help="add or remove some excludes of a backup path",
        description="Change the excludes of one backup path without giving the whole list again "
        "('path add PATH --exclude ...' replaces it). Same exclude syntax as 'path add'.")
    actions = exclude.add_subparsers(dest="exclude_command", metavar="ACTION", required=True)
    for name, func, text in (("add", cmd_exclude_add, "add excludes to a backup path"),
                             ("remove", cmd_exclude_remove, "remove excludes from a backup path")):
        action = actions.add_parser(
            name, parents=[common], help=text,
            description=f"{text.capitalize()}, keeping its other excludes. A relative PATH is taken "
            "against the current directory; patterns as in 'path add --exclude'.")
        action.add_argument("path", metavar="PATH", help="a backup path (see 'cbr-agent path list')")
        action.add_argument("patterns", nargs="+", metavar="PATTERN", help="an exclude")
        action.add_argument("--json", action="store_true", help="print the result as JSON")
        action.set_defaults(func=func)


def _absolute(raw: str, notes: list[str]) -> str:
    from cbr_agent.errors import UsageError
    from cbr_agent.pathrules import PathRuleError, normalize_path

    text = raw
    if raw and not raw.startswith("/"):
        text = os.path.join(os.getcwd(), raw)
        notes.append(f"note: relative path {raw!r} taken as {os.path.normpath(text)}")
    try:
        return normalize_path(text)
    except PathRuleError as exc:
        raise UsageError(str(exc), hint="give an absolute directory path without commas") from None


def plan_excludes(paths: list[str], patterns: list[str]) -> dict[str, list[str]]:
    """Which excludes go with which path: globs with every path, an absolute exclude with the paths
    that contain it (an error when none does)."""
    from cbr_agent.errors import UsageError
    from cbr_agent.pathrules import PathRuleError, is_inside, normalize_exclude, normalize_path

    plan: dict[str, list[str]] = {p: [] for p in paths}
    for pattern in patterns:
        try:
            if pattern.startswith("/"):
                target = normalize_path(pattern)
                owners = [p for p in paths if is_inside(target, p) and target != p]
                if not owners:
                    raise PathRuleError(f"exclude {pattern!r} is not inside any of the paths given "
                                        f"({', '.join(paths)})")
                for owner in owners:
                    plan[owner].append(normalize_exclude(owner, pattern))
            else:
                for path in paths:
                    plan[path].append(normalize_exclude(path, pattern))
        except PathRuleError as exc:
            raise UsageError(str(exc), hint="see 'cbr-agent path add --help' for the exclude "
                             "syntax") from None
    return {p: list(dict.fromkeys(e)) for p, e in plan.items()}


def _session(args: argparse.Namespace, *, create: bool = True) -> tuple[Any, str | None, Any]:
    """Settings, agent id (None when this host has none and ``create`` is false), control plane."""
    from cbr_agent.agent.connect import open_control_plane
    from cbr_agent.agent.identity import load_identity, peek_agent_id
    from cbr_agent.cli.context import settings_from_args

    settings = settings_from_args(args)
    if create:
        agent_id = load_identity(settings.state_dir, pinned=settings.agent_id).agent_id
    else:
        agent_id = settings.agent_id or peek_agent_id(settings.state_dir)
        if agent_id is None:
            if settings.endpoint:
                _reach(settings)
            return settings, None, None
    return settings, agent_id, open_control_plane(settings)


def _reach(settings: Any) -> None:
    """This host has no agent id, so nothing of it is on the control plane; still, an endpoint that
    cannot be used must not look like an empty list: missing credentials exit 2 (from opening it),
    refused ones 5, an unreachable endpoint 4."""
    from cbr_agent.agent.connect import open_control_plane

    cp = open_control_plane(settings)
    try:
        cp.list_agents(limit=1)
    finally:
        cp.close()


def _refresh(settings: Any, agent_id: str, cp: Any) -> None:
    """Update the local cache and nudge a running daemon to sync now."""
    import contextlib
    import signal

    from cbr_agent.agent.heartbeat import available_paths
    from cbr_agent.agent.state import running_pid, save_paths
    from cbr_agent.errors import CbrAgentError

    with contextlib.suppress(CbrAgentError):
        save_paths(settings.state_dir, agent_id, available_paths(cp.show_agent(agent_id)))
    pid = running_pid(settings.state_dir)
    if pid and pid > 0:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGUSR1)


def cmd_add(args: argparse.Namespace) -> int:
    from cbr_agent.agent.heartbeat import Syncer
    from cbr_agent.cli.output import print_json
    from cbr_agent.errors import NotFoundError

    notes: list[str] = []
    paths = list(dict.fromkeys(_absolute(p, notes) for p in args.paths))
    excludes = plan_excludes(paths, args.exclude)
    for note in notes:
        print(note, file=sys.stderr)
    missing = [p for p in paths if not os.path.lexists(p)]
    for path in missing:
        print(f"warning: {path} does not exist (yet); added anyway", file=sys.stderr)
    settings, agent_id, cp = _session(args)
    try:
        with_excludes = {p: e for p, e in excludes.items() if e}
        try:
            result = cp.add_paths(agent_id, paths, with_excludes)
        except NotFoundError:  # not registered yet: do it now, as 'register' would
            syncer = Syncer(settings, agent_id, open_cp=lambda _s: cp)
            syncer.register()
            result = cp.add_paths(agent_id, paths, with_excludes)
        _refresh(settings, agent_id, cp)
    finally:
        cp.close()
    if args.json:
        print_json({"added": list(result.added), "existed": list(result.existed), "missing": missing,
                    "excludes": with_excludes})
        return 0
    for path in result.added:
        print(f"added: {path}{_excludes_note(with_excludes.get(path))}")
    for path in result.existed:
        extra = f" (excludes now {', '.join(with_excludes[path])})" if with_excludes.get(path) else ""
        print(f"already there: {path}{extra}")
    return 0


def _excludes_note(excludes: list[str] | None) -> str:
    return f" (excluding {', '.join(excludes)})" if excludes else ""


def cmd_remove(args: argparse.Namespace) -> int:
    notes: list[str] = []
    paths = list(dict.fromkeys(_absolute(p, notes) for p in args.paths))
    for note in notes:
        print(note, file=sys.stderr)
    settings, agent_id, cp = _session(args, create=False)
    if agent_id is None:  # never registered: nothing can be there
        from cbr_agent.api.models import RemovePathResult

        return _print_removed(RemovePathResult(not_existed=tuple(paths)), args.json)
    try:
        result = _not_registered_hint(lambda: cp.remove_paths(agent_id, paths), agent_id, settings)
        _refresh(settings, agent_id, cp)
    finally:
        cp.close()
    return _print_removed(result, args.json)


def _print_removed(result: Any, as_json: bool) -> int:
    from cbr_agent.cli.output import print_json

    if as_json:
        print_json({"removed": list(result.removed), "not_existed": list(result.not_existed)})
        return 0
    for path in result.removed:
        print(f"removed: {path}")
    for path in result.not_existed:
        print(f"not there: {path}")
    return 0


def _not_registered_hint(call: Any, agent_id: str, settings: Any) -> Any:
    from cbr_agent.agent.connect import describe_endpoint
    from cbr_agent.errors import NotFoundError

    try:
        return call()
    except NotFoundError as exc:
        raise NotFoundError(exc.status, exc.error_code,
                            f"agent {agent_id} is not registered with {describe_endpoint(settings)}",
                            hint="run 'cbr-agent register' (or 'cbr-agent path add') first") from None


def cmd_list(args: argparse.Namespace) -> int:
    from cbr_agent.agent.heartbeat import available_paths
    from cbr_agent.agent.state import load_paths_or_recover, save_paths
    from cbr_agent.cli.exitcodes import OK, WARNINGS
    from cbr_agent.errors import ControlPlaneUnavailable

    settings, agent_id, cp = _session(args, create=False)
    code = OK
    if agent_id is None:
        return _print_list(None, (), args.json, code)
    try:
        agent = _not_registered_hint(lambda: cp.show_agent(agent_id), agent_id, settings)
        paths = available_paths(agent)
        save_paths(settings.state_dir, agent_id, paths)
    except ControlPlaneUnavailable as exc:
        cache = load_paths_or_recover(settings.state_dir)
        if cache is None or cache.agent_id != agent_id:
            raise
        print(f"warning: {exc}; showing the list cached at {cache.synced_at}", file=sys.stderr)
        paths, code = cache.paths, WARNINGS
    finally:
        cp.close()
    return _print_list(agent_id, paths, args.json, code)


def _print_list(agent_id: str | None, paths: Any, as_json: bool, code: int) -> int:
    from cbr_agent.agent.state import paths_to_json
    from cbr_agent.cli.output import print_json

    if as_json:
        print_json({"agent_id": agent_id, "paths": paths_to_json(paths)})
        return code
    if agent_id is None:
        print("no backup paths: this host is not registered yet (add one with 'cbr-agent path add DIR', "
              "which registers it)")
    elif not paths:
        print("no backup paths (add one with 'cbr-agent path add DIR')")
    for path in paths:
        print(f"{path.dir_path}{_excludes_note(list(path.excludes))}")
    return code


# -- path exclude add/remove ----------------------------------------------------------------------


def cmd_exclude_add(args: argparse.Namespace) -> int:
    def change(current: list[str], given: list[str]) -> tuple[list[str], dict[str, list[str]]]:
        new = [e for e in given if e not in current]
        return current + new, {"added": new, "existed": [e for e in given if e in current]}

    return _change_excludes(args, change)


def cmd_exclude_remove(args: argparse.Namespace) -> int:
    def change(current: list[str], given: list[str]) -> tuple[list[str], dict[str, list[str]]]:
        return ([e for e in current if e not in given],
                {"removed": [e for e in given if e in current],
                 "not_existed": [e for e in given if e not in current]})

    return _change_excludes(args, change)


def _change_excludes(args: argparse.Namespace, change: Any) -> int:
    """Read the path's excludes from the control plane, change them, write the whole list back (the
    API only replaces a path's list: add-path of an existing path with its new excludes)."""
    from cbr_agent.cli.output import print_json
    from cbr_agent.errors import UsageError

    notes: list[str] = []
    path = _absolute(args.path, notes)
    given = plan_excludes([path], args.patterns)[path]
    for note in notes:
        print(note, file=sys.stderr)
    settings, agent_id, cp = _session(args, create=False)
    not_a_path = UsageError(f"{path} is not a backup path of this agent",
                            hint=f"see 'cbr-agent path list', or add it with 'cbr-agent path add {path} "
                            "--exclude PATTERN'")
    if agent_id is None:
        raise not_a_path
    try:
        agent = _not_registered_hint(lambda: cp.show_agent(agent_id), agent_id, settings)
        entry = next((p for p in agent.paths or () if p.dir_path == path and p.status != "remove"), None)
        if entry is None:
            raise not_a_path
        excludes, result = change(list(entry.excludes), given)
        if excludes != list(entry.excludes):
            cp.add_paths(agent_id, [path], {path: excludes})
        _refresh(settings, agent_id, cp)
    finally:
        cp.close()
    if args.json:
        print_json({"path": path, **result, "excludes": excludes})
        return 0
    labels = {"added": "added", "existed": "already there", "removed": "removed",
              "not_existed": "not there"}
    for key, items in result.items():
        for item in items:
            print(f"{labels[key]}: {item}")
    print(f"excludes of {path}: {', '.join(excludes) if excludes else 'none'}")
    return 0
