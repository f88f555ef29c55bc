"""Engine commands: init, backup, snapshots, ls, restore, check, forget, prune (repair: cli/repair.py).

Module-level imports are standard library only (``cbr-agent --help`` stays fast); handlers import the
engine when they run. The engine itself knows nothing of the CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cbr_agent.cli.backup_args import add_backup_options
from cbr_agent.cli.durations import add_retry_lock
from cbr_agent.cli.exitcodes import WARNINGS
from cbr_agent.cli.forget_args import add_forget_options
from cbr_agent.cli.limits import add_limits, limit_overrides
from cbr_agent.cli.output import human_bytes, plural, short_id
from cbr_agent.cli.restore_args import add_restore_options
from cbr_agent.cli.snapargs import add_filter_options

__all__ = ["human_bytes", "printable", "register"]


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("init", parents=[common], help="create the backup repository",
                              description="Create the repository and record its location in the config "
                              "file (created if it does not exist). The password is CBR_AGENT_PASSWORD, "
                              "'password_file', or an existing repository.password (state dir, then "
                              "next to the config file), and init says which; with none, a random one "
                              "is generated into repository.password in the state dir: keep a copy "
                              "elsewhere.")
    p.add_argument("--repository", metavar="URL",
                   help="path, file:///... or s3://BUCKET/PREFIX (default: the configured one)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_init)

    p = subparsers.add_parser("backup", parents=[common], help="back up paths now",
                              description="Back up the given paths, or the agent's configured paths with "
                              "their excludes when none are given. Exit 3 when some files could not be "
                              "read (the snapshot is written without them).")
    p.add_argument("paths", nargs="*", metavar="PATH", help="paths to back up (default: configured paths)")
    p.add_argument("--json", action="store_true", help="print one summary object")
    p.add_argument("--dry-run", action="store_true", help="read and hash everything, store nothing")
    add_retry_lock(p)
    add_backup_options(p)
    add_limits(p)
    p.set_defaults(func=cmd_backup)

    p = subparsers.add_parser("snapshots", parents=[common], help="list snapshots, oldest first")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    add_filter_options(p)
    p.add_argument("--latest", type=int, default=0, metavar="N",
                   help="only the N newest of each host and path set")
    p.set_defaults(func=cmd_snapshots)

    p = subparsers.add_parser("ls", parents=[common], help="list the files of a snapshot")
    p.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot id, unique prefix, or 'latest'")
    p.add_argument("path", nargs="?", default="/", metavar="PATH", help="only below this path")
    p.add_argument("-l", "--long", action="store_true", help="type, mode, owner, size and time too")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=cmd_ls)

    p = subparsers.add_parser("restore", parents=[common], help="restore a snapshot into a directory",
                              description="Restore contents and metadata. Each file is written under a "
                              "temporary name and renamed, so an interrupted restore never leaves a "
                              "half-written file. Exit 1 when some file could not be restored.")
    p.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot id, unique prefix, or 'latest'")
    p.add_argument("--path", action="append", default=[], metavar="P",
                   help="restore only this path of the snapshot (repeatable)")
    p.add_argument("--target", required=True, metavar="DIR",
                   help="directory to restore into ('/' = in place)")
    p.add_argument("--overwrite", choices=("always", "if-changed", "never"), default="always",
                   help="what to do with files that exist (default always)")
    p.add_argument("--dry-run", action="store_true", help="say what would be restored, write nothing")
    p.add_argument("--json", action="store_true", help="print a summary object")
    add_restore_options(p)
    add_limits(p)
    p.set_defaults(func=cmd_restore)

    p = subparsers.add_parser("check", parents=[common], help="verify the repository")
    p.add_argument("--read-data", action="store_true", help="also decrypt and verify every blob")
    p.add_argument("--read-data-subset", metavar="N/M|P%",
                   help="read and verify only a slice of the packs: the N-th of M, or P percent at random")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_retry_lock(p)
    add_limits(p)
    p.set_defaults(func=cmd_check)

    p = subparsers.add_parser("forget", parents=[common],
                              help="remove snapshots by id or by a retention policy",
                              description="Forget the snapshots named by id (or unique id prefix; damaged "
                              "ones too), or keep the snapshots the policy names (per host and path set) "
                              "and forget the others; their data goes with 'prune' (or --prune).")
    p.add_argument("snapshot_ids", nargs="*", metavar="SNAPSHOT_ID",
                   help="snapshot id or unique prefix (instead of --keep-*)")
    for name in ("last", "daily", "weekly", "monthly"):
        p.add_argument(f"--keep-{name}", type=int, default=None, metavar="N", help=f"keep {name} N")
    add_forget_options(p)
    p.add_argument("--prune", action="store_true", help="prune right after")
    p.add_argument("--dry-run", action="store_true", help="only say what would be forgotten")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_retry_lock(p)
    add_limits(p)
    p.set_defaults(func=cmd_forget)

    p = subparsers.add_parser("prune", parents=[common], help="remove data no snapshot references")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--dry-run", action="store_true", help="only say what would go and what it would free")
    add_retry_lock(p)
    add_limits(p)
    p.set_defaults(func=cmd_prune)


# ---------------------------------------------------------------------------------------------- helpers
def _settings(args: argparse.Namespace, **overrides: Any) -> Any:
    from cbr_agent.cli.context import settings_from_args

    for name, value in limit_overrides(args).items():
        overrides.setdefault(name, value)
    return settings_from_args(args, **overrides)


def _open(settings: Any) -> Any:
    # what repoaccess.configured.open_repository(settings) does without create_default; cli.limits
    # imports nothing at module level (start-up time of snapshots/ls/restore/check)
    from cbr_agent.cli.limits import open_configured

    return open_configured(settings)


def printable(text: str) -> str:
    """A path for a terminal: control characters and undecodable bytes escaped, one line per path."""
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif not ch.isprintable():
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def _json_text(text: str) -> str:
    """Surrogate-escaped names as JSON-safe text (undecodable bytes shown as \\xNN)."""
    return printable(text) if any(0xDC80 <= ord(c) <= 0xDCFF for c in text) else text


# ---------------------------------------------------------------------------------------------- init
def cmd_init(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.repoaccess.password import find_password, generate_password_file
    from cbr_agent.repository import Repository
    from cbr_agent.repository.backends import BackendOptions, open_backend

    # init writes the config file, so one named with --config need not exist yet
    settings = _settings(args, repository=args.repository, config_must_exist=False)
    options = BackendOptions.from_settings(settings)
    open_backend(settings.repository, options)  # a URL this build cannot use: before any file is made
    found = find_password(settings)
    generated = None
    if found is None:
        password, generated = generate_password_file(settings, announce=False)
        source = f"password file {generated} (generated)"
    else:
        password, source = found.value, found.source
    repo = Repository.init(settings.repository, password, options=options)
    # a config file named with --config (or CBR_AGENT_CONFIG) that did not exist is created, as
    # register does; the default one is written only to record --repository
    named = bool(getattr(args, "config", None) or os.environ.get("CBR_AGENT_CONFIG"))
    if args.repository or (named and not settings.config_file.exists()):
        from cbr_agent.agent.configfile import persist_registration

        persist_registration(settings, {"repository": settings.repository}, environ={}, by="init")
    result = {"id": repo.id, "location": repo.location, "config_file": str(settings.config_file),
              "password_source": source, "password_file": str(generated) if generated else None}
    if args.json:
        print_json(result)
    else:
        print(f"created repository {short_id(repo.id)} at {repo.location}")
    if generated:
        print(f"cbr-agent: a random repository password was written to {generated}; KEEP A COPY OF IT "
              "SOMEWHERE ELSE: without it the backups cannot be restored", file=sys.stderr)
    else:
        print(f"cbr-agent: the repository's password is the one of the {source}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- backup
def _configured_paths(settings: Any) -> list[Any]:
    from cbr_agent.agent.connect import open_control_plane
    from cbr_agent.agent.identity import peek_agent_id
    from cbr_agent.errors import UsageError

    agent_id = settings.agent_id or peek_agent_id(settings.state_dir)
    if not agent_id:
        raise UsageError("no paths given and this agent is not registered yet",
                         hint="name paths on the command line, or 'cbr-agent register' and "
                         "'cbr-agent path add'")
    control = open_control_plane(settings)
    try:
        agent = control.show_agent(agent_id)
    finally:
        control.close()
    return [p for p in (agent.paths or ()) if p.status == "available"]


def cmd_backup(args: argparse.Namespace) -> int:
    import contextlib
    import signal
    import threading

    from cbr_agent.backup.run import RunOptions, backup_paths
    from cbr_agent.cli import progress as progress_line
    from cbr_agent.cli.backup_args import backup_tags, cli_excludes, cli_paths, with_excludes
    from cbr_agent.cli.output import print_json

    settings = _settings(args)
    tags, excludes, given = backup_tags(args), cli_excludes(args), cli_paths(args)
    paths: list[Any] = given if given else _configured_paths(settings)
    paths = with_excludes(paths, excludes)
    cancel = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    line = progress_line.StatusLine()
    try:
        with progress_line.showing(line) if progress_line.wanted(args) else contextlib.nullcontext():
            progress = progress_line.BackupLine(line) if progress_line.wanted(args) else None
            options = RunOptions(cancel=cancel, progress=progress, dry_run=args.dry_run,
                                 lock_wait=args.retry_lock, tags=tags)
            summary = backup_paths(settings, paths, options)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not args.dry_run:  # every snapshot is a CBR backup (issue 12); queued if the control plane is away
        from cbr_agent.agent.cbrlink import report_local_backup

        report_local_backup(settings, summary, trigger="cli", auto=False)
    if args.json:
        out = summary.to_dict()
        out["paths"] = [_json_text(p) for p in out["paths"]]
        out["warnings"] = [_json_text(w) for w in out["warnings"]]
        print_json(out)
    else:
        print(backup_line(summary))
        for warning in summary.warnings:
            print(f"warning: {printable(warning)}", file=sys.stderr)
    return WARNINGS if summary.warnings else 0


def backup_line(summary: Any) -> str:
    """The closing line of a backup: what was saved, read, added, and stored after compression."""
    files = summary.files_new + summary.files_changed + summary.files_unchanged
    head = (f"snapshot {short_id(summary.snapshot_id)} saved" if summary.snapshot_id
            else "dry run, nothing saved")
    added = (f"would add {human_bytes(summary.bytes_added)}" if summary.dry_run
             else f"added {human_bytes(summary.bytes_added)} "
             f"(stored {human_bytes(summary.bytes_stored)} after compression)")
    return (f"{head}: {plural(files, 'file')} ({summary.files_new} new, {summary.files_changed} changed, "
            f"{summary.files_unchanged} unchanged); read {human_bytes(summary.bytes_read)}, {added} "
            f"in {summary.duration:.1f} s")


# ---------------------------------------------------------------------------------------------- snapshots
def _snapshot_dict(snap: Any) -> dict[str, Any]:
    d = snap.to_dict()
    d["id"] = snap.id
    d["paths"] = [_json_text(p) for p in d["paths"]]
    d["excludes"] = {_json_text(k): [_json_text(e) for e in v] for k, v in d["excludes"].items()}
    return d


def cmd_snapshots(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json, print_table
    from cbr_agent.cli.snapargs import latest_of_groups, snapshot_filter

    repo = _open(_settings(args))
    snaps = latest_of_groups(snapshot_filter(args).apply(repo.list_snapshots()), args.latest)
    if args.json:
        print_json([_snapshot_dict(s) for s in snaps])
        return 0
    rows = [(short_id(s.id), s.time.astimezone().strftime("%Y-%m-%d %H:%M:%S"), s.host,
             printable(", ".join(s.paths)),
             s.summary.get("files_new", 0) + s.summary.get("files_changed", 0)
             + s.summary.get("files_unchanged", 0),
             human_bytes(s.summary.get("bytes_total", 0)), ",".join(s.tags)) for s in snaps]
    print_table(("ID", "TIME", "HOST", "PATHS", "FILES", "SIZE", "TAGS"), rows)
    return 0


# ---------------------------------------------------------------------------------------------- ls
def _walk_snapshot(repo: Any, tree: str, below: str) -> Any:
    """``(path, node)`` of every entry at or below ``below``, in name order."""
    from cbr_agent.errors import UsageError
    from cbr_agent.repository import decode_tree
    from cbr_agent.repository.walk import walk

    below = os.path.normpath("/" + below.strip("/")) if below not in ("", "/") else "/"
    parts = [p for p in below.split("/") if p]
    tree_id, prefix = tree, ""
    for i, part in enumerate(parts):
        nodes = decode_tree(repo.load_blob(bytes.fromhex(tree_id)))
        node = next((n for n in nodes if n["name"] == part), None)
        if node is None:
            raise UsageError(f"{below} is not in the snapshot", hint="see 'cbr-agent ls SNAPSHOT'")
        prefix = prefix + "/" + part
        if i == len(parts) - 1:
            yield prefix, node
        if node.get("type") != "dir":
            return
        tree_id = node["subtree"]
    yield from walk(repo, tree_id, prefix)  # depth first: a directory, then everything in it


#: node keys ls --json leaves out: blob references, the name (in "path") and the repository's bookkeeping
_LS_HIDDEN = frozenset(("content", "subtree", "name", "xattrs", "totals"))


def cmd_ls(args: argparse.Namespace) -> int:
    import stat as statmod
    from datetime import datetime, timezone

    from cbr_agent.cli.output import print_json

    repo = _open(_settings(args))
    snap = repo.find_snapshot(args.snapshot)
    entries = _walk_snapshot(repo, snap.tree, args.path)
    if args.json:
        out = []
        for path, node in entries:
            item = {k: v for k, v in node.items() if k not in _LS_HIDDEN}
            item["path"] = _json_text(path)
            if "target" in item:
                item["target"] = _json_text(item["target"])
            item["mtime"] = datetime.fromtimestamp(node.get("mtime_ns", 0) / 1e9, timezone.utc).isoformat()
            out.append(item)
        print_json(out)
        return 0
    for path, node in entries:
        if not args.long:
            print(printable(path))
            continue
        kind = {"dir": "d", "symlink": "l", "fifo": "p", "chardev": "c", "blockdev": "b",
                "socket": "s"}.get(node.get("type", ""), "-")
        mode = kind + statmod.filemode(int(node.get("mode", 0)))[1:]
        when = datetime.fromtimestamp(node.get("mtime_ns", 0) / 1e9).strftime("%Y-%m-%d %H:%M:%S")
        link = f" -> {printable(node['target'])}" if node.get("type") == "symlink" else ""
        owner = f"{node.get('user') or node.get('uid')}/{node.get('group') or node.get('gid')}"
        print(f"{mode} {owner:>16} {node.get('size', 0):>12} {when} {printable(path)}{link}")
    return 0


# ---------------------------------------------------------------------------------------------- restore
def _snapshot_paths(raw: list[str]) -> list[str]:
    """``--path`` values as absolute paths of the snapshot: a relative one is taken against the current
    directory, as ``backup`` and ``path add`` take it (and a note says so)."""
    out = []
    for path in raw:
        if path.startswith("/"):
            out.append(path)
            continue
        absolute = os.path.abspath(path)
        print(f"note: relative path {path!r} taken as {absolute}", file=sys.stderr)
        out.append(absolute)
    return out


def cmd_restore(args: argparse.Namespace) -> int:
    from cbr_agent.cli import progress as progress_line
    from cbr_agent.cli.output import print_json
    from cbr_agent.cli.snapargs import resolve_snapshot, snapshot_filter
    from cbr_agent.progress import Progress
    from cbr_agent.restore.restorer import restore_snapshot

    paths = _snapshot_paths(args.path)
    settings = _settings(args)
    repo = _open(settings)
    snap = resolve_snapshot(repo, args.snapshot, snapshot_filter(args))
    counts = Progress()
    with progress_line.polling(lambda t: progress_line.describe(counts, t),
                               enabled=progress_line.wanted(args)):
        summary = restore_snapshot(repo, snap, args.target, paths=paths, overwrite=args.overwrite,
                                   dry_run=args.dry_run, progress=counts, include=args.include,
                                   exclude=args.exclude, processes=settings.backup_processes)
    verified = None
    if args.verify and not args.dry_run:
        from cbr_agent.cli.restore_args import verify

        # what the restore planned (restored or left in place): what is read back
        checked = Progress()
        checked.start("verifying", "files", items_total=counts.items_total, bytes_total=counts.bytes_total)
        with progress_line.polling(lambda t: progress_line.describe(checked, t),
                                   enabled=progress_line.wanted(args)):
            verified = verify(repo, snap, args, checked)
    if args.json:
        out = summary.to_dict()
        out["snapshot_id"] = snap.id
        out["errors"] = [_json_text(e) for e in out["errors"]]
        out["warnings"] = [_json_text(w) for w in out["warnings"]]
        out["verify"] = verified.to_dict() if verified is not None else None
        print_json(out)
    else:
        print(restore_line(summary, snap.id, os.path.abspath(args.target)))
        for w in summary.warnings:
            print(f"warning: {printable(w)}", file=sys.stderr)
        for e in summary.errors:
            print(f"error: {printable(e)}", file=sys.stderr)
        if verified is not None:
            print(f"verified {verified.files} files, {human_bytes(verified.bytes)}"
                  + (f"; {len(verified.errors)} differ" if verified.errors else ": all match"))
    if verified is not None and verified.errors:
        print(f"cbr-agent: error: {len(verified.errors)} restored files do not match the snapshot",
              file=sys.stderr)
        return 1
    if summary.errors:
        print(f"cbr-agent: error: {plural(len(summary.errors), 'entry', 'entries')} could not be "
              "restored (see above)", file=sys.stderr)
        return 1
    return WARNINGS if summary.warnings else 0


def restore_line(summary: Any, snapshot_id: str, target: str) -> str:
    """What a restore did: only what was (or would be) restored counts; what was not is said apart."""
    verb = "would restore" if summary.dry_run else "restored"
    text = (f"{verb} {plural(summary.files, 'file')}, {plural(summary.dirs, 'directory', 'directories')}, "
            f"{plural(summary.others, 'other entry', 'other entries')}, "
            f"{human_bytes(summary.bytes_written)} from snapshot {short_id(snapshot_id)} into {target}")
    if summary.skipped:
        text += f"; {plural(summary.skipped, 'existing entry', 'existing entries')} left alone"
    if summary.files_failed:
        text += (f"; {plural(summary.files_failed, 'file')} "
                 f"{'would fail' if summary.dry_run else 'not restored'} (see the errors)")
    return text


# ---------------------------------------------------------------------------------------------- check
def cmd_check(args: argparse.Namespace) -> int:
    from cbr_agent.cli import progress as progress_line
    from cbr_agent.cli.output import print_json
    from cbr_agent.errors import UsageError
    from cbr_agent.progress import Progress
    from cbr_agent.repository.check import PackSubset, check_lock, run_check, unlocked_warning

    try:
        subset = PackSubset(args.read_data_subset) if args.read_data_subset else None
    except ValueError as exc:
        raise UsageError(f"--read-data-subset: {exc}") from None
    repo = _open(_settings(args))
    repo.lock_wait = args.retry_lock
    counts = Progress()
    with check_lock(repo) as no_lock, progress_line.polling(  # read-only: checked without a lock
            lambda t: progress_line.describe(counts, t), enabled=progress_line.wanted(args)):
        report = run_check(repo, read_data=args.read_data, progress=counts, subset=subset)
    if no_lock is not None:
        report.warnings.insert(0, unlocked_warning(no_lock))
    if args.json:
        print_json(report.to_dict())
    else:
        print(f"checked {plural(report.snapshots, 'snapshot')}, {plural(report.trees, 'tree')}, "
              f"{plural(report.data_blobs, 'data blob')} in {plural(report.packs, 'pack')}"
              + (f"; verified {plural(report.blobs_verified, 'blob')}" if report.read_data else "")
              + (f" of {plural(report.packs_read, 'pack')} (subset {subset})" if subset else ""))
        for p in report.warnings:
            print(f"warning: {p}", file=sys.stderr)
        for p in report.errors:
            print(f"error: {p}", file=sys.stderr)
        errors = len(report.errors)
        print("no errors were found" if report.ok
              else f"{plural(errors, 'error')} {'was' if errors == 1 else 'were'} found")
    return 0 if report.ok else 1


# ---------------------------------------------------------------------------------------------- forget/prune
def cmd_forget(args: argparse.Namespace) -> int:
    from cbr_agent.cli.forget_args import keep_given, policy_from_args
    from cbr_agent.cli.output import print_json
    from cbr_agent.cli.snapargs import snapshot_filter
    from cbr_agent.errors import UsageError
    from cbr_agent.repository.retention import select_with_reasons

    if args.snapshot_ids:
        if keep_given(args):
            raise UsageError("give snapshot ids or --keep-* options, not both")
        return _forget_ids(args)
    policy, group_by = policy_from_args(args)
    repo = _open(_settings(args))
    repo.lock_wait = args.retry_lock
    prune_report = None
    # a dry run deletes nothing: a shared lock will do (append-only credentials may run it)
    with repo.lock(exclusive=not args.dry_run):
        candidates = snapshot_filter(args).apply(repo.list_snapshots())
        keep, forget, reasons = select_with_reasons(candidates, policy, group_by)
        if not args.dry_run:
            for snap in forget:
                repo.forget_snapshot(snap.id)
            if args.prune:
                prune_report = _prune_with_progress(repo, args)
        elif args.prune:  # what the prune would free once these are gone
            from cbr_agent.repository.prune import run_prune

            prune_report = run_prune(repo, dry_run=True, ignore_snapshots=frozenset(s.id for s in forget))
    if args.json:
        print_json({"keep": [s.id for s in keep], "forget": [s.id for s in forget],
                    "reasons": {s.id: reasons[id(s)] for s in keep},
                    "dry_run": args.dry_run,
                    "prune": prune_report.to_dict() if prune_report is not None else None})
    else:
        verb = "would forget" if args.dry_run else "forgot"
        print(f"kept {plural(len(keep), 'snapshot')}, {verb} {len(forget)}")
        for snap in forget:
            print(f"  {short_id(snap.id)} {snap.time.astimezone():%Y-%m-%d %H:%M:%S} {snap.host}")
        if prune_report is not None:
            _print_prune(prune_report)
    return 0


def _forget_ids(args: argparse.Namespace) -> int:
    """``forget ID...``: ids are resolved without reading the snapshots, so damaged ones can go too."""
    from cbr_agent.cli.output import print_json
    from cbr_agent.errors import RepositoryError
    from cbr_agent.repository.prune import prune

    repo = _open(_settings(args))
    repo.lock_wait = args.retry_lock
    prune_report = None
    with repo.lock(exclusive=not args.dry_run):  # a dry run deletes nothing: a shared lock will do
        ids = list(dict.fromkeys(repo.resolve_snapshot_id(ref) for ref in args.snapshot_ids))
        described = {}
        for sid in ids:
            try:
                snap = repo.load_snapshot(sid)
                described[sid] = f"{snap.time.astimezone():%Y-%m-%d %H:%M:%S} {snap.host}"
            except RepositoryError:
                described[sid] = "(cannot be read)"
        if not args.dry_run:
            for sid in ids:
                repo.forget_snapshot(sid)
            if args.prune:
                prune_report = prune(repo)
    if args.json:
        print_json({"keep": None, "forget": ids, "dry_run": args.dry_run,
                    "prune": prune_report.to_dict() if prune_report is not None else None})
    else:
        print(f"{'would forget' if args.dry_run else 'forgot'} {plural(len(ids), 'snapshot')}")
        for sid in ids:
            print(f"  {short_id(sid)} {described[sid]}")
        if prune_report is not None:
            _print_prune(prune_report)
    return 0


def _print_prune(report: Any) -> None:
    d = report.to_dict()
    if d.get("dry_run"):
        print(f"prune would remove {plural(d.get('blobs_removed', 0), 'blob')}, delete "
              f"{plural(d.get('packs_deleted', 0), 'pack')} and {d.get('unindexed_packs_deleted', 0)} "
              f"unindexed, rewrite {d.get('packs_rewritten', 0)}; it would free about "
              f"{human_bytes(d.get('bytes_freed', 0))}")
        return
    print(f"prune: removed {plural(d.get('blobs_removed', 0), 'blob')}, "
          f"deleted {plural(d.get('packs_deleted', 0), 'pack')}, "
          f"rewrote {d.get('packs_rewritten', 0)}; freed {human_bytes(d.get('bytes_freed', 0) or 0)}")


def _prune_with_progress(repo: Any, args: argparse.Namespace) -> Any:
    from cbr_agent.cli import progress as progress_line
    from cbr_agent.progress import Progress
    from cbr_agent.repository.prune import prune

    counts = Progress()
    with progress_line.polling(lambda t: progress_line.describe(counts, t),
                               enabled=progress_line.wanted(args)):
        return prune(repo, progress=counts)


def cmd_prune(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json

    repo = _open(_settings(args))
    repo.lock_wait = args.retry_lock
    if args.dry_run:
        from cbr_agent.repository.prune import run_prune

        with repo.lock(exclusive=False):
            report = run_prune(repo, dry_run=True)
    else:
        report = _prune_with_progress(repo, args)
    if args.json:
        print_json(report.to_dict())
    else:
        _print_prune(report)
    return WARNINGS if getattr(report, "warnings", None) else 0
