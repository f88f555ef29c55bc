"""Engine commands: init, backup, snapshots, ls, restore, check, forget, prune.

Module-level imports are standard library only (``cbr-agent --help`` stays fast); handlers import the
engine when they run. The engine itself knows nothing of the CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from cbr_agent.cli.exitcodes import WARNINGS


def _add_limits(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit-upload", type=float, metavar="KiB/s",
                   help="limit repository uploads to this many KiB/s (config limit_upload)")
    p.add_argument("--limit-download", type=float, metavar="KiB/s",
                   help="limit repository downloads to this many KiB/s (config limit_download)")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("init", parents=[common], help="create the backup repository",
                              description="Create the repository and record its location in the config "
                              "file. With no password configured, a random one is generated into "
                              "repository.password next to the config file: keep a copy elsewhere.")
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
    _add_limits(p)
    p.set_defaults(func=cmd_backup)

    p = subparsers.add_parser("snapshots", parents=[common], help="list snapshots, oldest first")
    p.add_argument("--json", action="store_true", help="print a JSON list")
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
    _add_limits(p)
    p.set_defaults(func=cmd_restore)

    p = subparsers.add_parser("check", parents=[common], help="verify the repository")
    p.add_argument("--read-data", action="store_true", help="also decrypt and verify every blob")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_limits(p)
    p.set_defaults(func=cmd_check)

    p = subparsers.add_parser("forget", parents=[common], help="remove snapshots by a retention policy",
                              description="Keep the snapshots the policy names (per host and path set), "
                              "forget the others; their data goes with 'prune' (or --prune).")
    for name in ("last", "daily", "weekly", "monthly"):
        p.add_argument(f"--keep-{name}", type=int, default=0, metavar="N", help=f"keep {name} N")
    p.add_argument("--prune", action="store_true", help="prune right after")
    p.add_argument("--dry-run", action="store_true", help="only say what would be forgotten")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_limits(p)
    p.set_defaults(func=cmd_forget)

    p = subparsers.add_parser("prune", parents=[common], help="remove data no snapshot references")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_limits(p)
    p.set_defaults(func=cmd_prune)


# ---------------------------------------------------------------------------------------------- helpers
def _settings(args: argparse.Namespace, **overrides: Any) -> Any:
    from cbr_agent.cli.context import settings_from_args

    for name in ("limit_upload", "limit_download"):
        overrides.setdefault(name, getattr(args, name, None))
    return settings_from_args(args, **overrides)


def _open(settings: Any) -> Any:
    # what backup.job.open_repository(settings) does without create_default, minus importing the
    # whole backup pipeline (about a third of the start-up time of snapshots/ls/restore/check)
    from cbr_agent.backup.password import require_password
    from cbr_agent.repository import Repository
    from cbr_agent.repository.backends import BackendOptions

    return Repository.open(settings.repository, require_password(settings),
                           options=BackendOptions.from_settings(settings))


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


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


# ---------------------------------------------------------------------------------------------- init
def cmd_init(args: argparse.Namespace) -> int:
    from cbr_agent.backup.password import generate_password_file, resolve_password
    from cbr_agent.cli.output import print_json
    from cbr_agent.repository import Repository
    from cbr_agent.repository.backends import BackendOptions

    settings = _settings(args, repository=args.repository)
    password = resolve_password(settings)
    generated = None
    if password is None:
        password, generated = generate_password_file(settings)
    repo = Repository.init(settings.repository, password, options=BackendOptions.from_settings(settings))
    if args.repository:
        from cbr_agent.agent.configfile import persist_registration

        persist_registration(settings, {"repository": settings.repository}, environ={})
    result = {"id": repo.id, "location": repo.location,
              "password_file": str(generated) if generated else None}
    if args.json:
        print_json(result)
    else:
        print(f"created repository {repo.id[:16]} at {repo.location}")
    if generated:
        print(f"cbr-agent: a random repository password was written to {generated}; KEEP A COPY OF IT "
              "SOMEWHERE ELSE: without it the backups cannot be restored", file=sys.stderr)
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


class _ProgressLine:
    def __init__(self) -> None:
        self.width = 0

    def __call__(self, info: Any) -> None:
        rate = info.bytes_done / info.elapsed if info.elapsed > 0 else 0.0
        eta = ""
        if info.bytes_expected and rate > 0 and info.bytes_expected > info.bytes_done:
            seconds = int((info.bytes_expected - info.bytes_done) / rate)
            eta = f", ETA {seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        line = (f"{info.files} files, {human_bytes(info.bytes_done)}, {human_bytes(rate)}/s{eta}, "
                f"{int(info.elapsed)} s")
        if info.finished:
            sys.stderr.write("\r" + " " * self.width + "\r")
        else:
            sys.stderr.write("\r" + line.ljust(self.width))
            self.width = len(line)
        sys.stderr.flush()


def cmd_backup(args: argparse.Namespace) -> int:
    import signal
    import threading

    from cbr_agent.backup.job import backup_paths
    from cbr_agent.cli.output import print_json

    settings = _settings(args)
    if args.paths:
        paths: list[Any] = [os.path.abspath(p) for p in args.paths]
    else:
        paths = _configured_paths(settings)
    cancel = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    try:
        progress = _ProgressLine() if sys.stderr.isatty() and not args.json else None
        summary = backup_paths(settings, paths, cancel=cancel, progress=progress, dry_run=args.dry_run)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        out = summary.to_dict()
        out["paths"] = [_json_text(p) for p in out["paths"]]
        out["warnings"] = [_json_text(w) for w in out["warnings"]]
        print_json(out)
    else:
        what = "would add" if summary.dry_run else "added"
        sid = (f"snapshot {summary.snapshot_id[:16]} saved" if summary.snapshot_id
               else "dry run, nothing saved")
        print(f"{sid}: {summary.files_new} new, {summary.files_changed} changed, "
              f"{summary.files_unchanged} unchanged files; read {human_bytes(summary.bytes_read)}, "
              f"{what} {human_bytes(summary.bytes_added)} in {summary.duration:.1f} s")
        for warning in summary.warnings:
            print(f"warning: {printable(warning)}", file=sys.stderr)
    return WARNINGS if summary.warnings else 0


# ---------------------------------------------------------------------------------------------- snapshots
def _snapshot_dict(snap: Any) -> dict[str, Any]:
    d = snap.to_dict()
    d["id"] = snap.id
    d["paths"] = [_json_text(p) for p in d["paths"]]
    d["excludes"] = {_json_text(k): [_json_text(e) for e in v] for k, v in d["excludes"].items()}
    return d


def cmd_snapshots(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json, print_table

    repo = _open(_settings(args))
    snaps = repo.list_snapshots()
    if args.json:
        print_json([_snapshot_dict(s) for s in snaps])
        return 0
    rows = [(s.short_id, s.time.astimezone().strftime("%Y-%m-%d %H:%M:%S"), s.host,
             printable(", ".join(s.paths)),
             s.summary.get("files_new", 0) + s.summary.get("files_changed", 0)
             + s.summary.get("files_unchanged", 0),
             human_bytes(s.summary.get("bytes_total", 0))) for s in snaps]
    print_table(("ID", "TIME", "HOST", "PATHS", "FILES", "SIZE"), rows)
    return 0


# ---------------------------------------------------------------------------------------------- ls
def _walk_snapshot(repo: Any, tree: str, below: str) -> Any:
    """``(path, node)`` of every entry at or below ``below``, in name order."""
    from cbr_agent.errors import UsageError
    from cbr_agent.repository import decode_tree

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
    # depth first, pre-order: a directory, then everything in it
    stack = [(iter(decode_tree(repo.load_blob(bytes.fromhex(tree_id)))), prefix)]
    while stack:
        nodes, where = stack[-1]
        node = next(nodes, None)
        if node is None:
            stack.pop()
            continue
        path = where + "/" + node["name"]
        yield path, node
        if node.get("type") == "dir" and node.get("subtree"):
            stack.append((iter(decode_tree(repo.load_blob(bytes.fromhex(node["subtree"])))), path))


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
            item = {k: v for k, v in node.items() if k not in ("content", "subtree", "name", "xattrs")}
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
def cmd_restore(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.restore.restorer import restore_snapshot

    repo = _open(_settings(args))
    snap = repo.find_snapshot(args.snapshot)
    summary = restore_snapshot(repo, snap, args.target, paths=args.path, overwrite=args.overwrite,
                               dry_run=args.dry_run)
    if args.json:
        out = summary.to_dict()
        out["snapshot_id"] = snap.id
        out["errors"] = [_json_text(e) for e in out["errors"]]
        out["warnings"] = [_json_text(w) for w in out["warnings"]]
        print_json(out)
    else:
        verb = "would restore" if args.dry_run else "restored"
        print(f"{verb} {summary.files} files, {summary.dirs} directories, {summary.others} other entries, "
              f"{human_bytes(summary.bytes_written)} from snapshot {snap.short_id} into "
              f"{os.path.abspath(args.target)}"
              + (f"; {summary.skipped} existing entries left alone" if summary.skipped else ""))
        for w in summary.warnings:
            print(f"warning: {printable(w)}", file=sys.stderr)
        for e in summary.errors:
            print(f"error: {printable(e)}", file=sys.stderr)
    if summary.errors:
        print(f"cbr-agent: error: {len(summary.errors)} entries could not be restored (see above)",
              file=sys.stderr)
        return 1
    return WARNINGS if summary.warnings else 0


# ---------------------------------------------------------------------------------------------- check
def cmd_check(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.repository.check import run_check

    repo = _open(_settings(args))
    with repo.lock(exclusive=False):
        report = run_check(repo, read_data=args.read_data)
    if args.json:
        print_json(report.to_dict())
    else:
        print(f"checked {report.snapshots} snapshots, {report.trees} trees, {report.data_blobs} data blobs "
              f"in {report.packs} packs" + (f"; verified {report.blobs_verified} blobs" if args.read_data
                                             else ""))
        for p in report.warnings:
            print(f"warning: {p}", file=sys.stderr)
        for p in report.errors:
            print(f"error: {p}", file=sys.stderr)
        print("no errors were found" if report.ok else f"{len(report.errors)} errors were found")
    return 0 if report.ok else 1


# ---------------------------------------------------------------------------------------------- forget/prune
def cmd_forget(args: argparse.Namespace) -> int:
    from cbr_agent.backup.retention import Policy, select
    from cbr_agent.cli.output import print_json
    from cbr_agent.errors import UsageError
    from cbr_agent.repository.prune import prune

    policy = Policy(args.keep_last, args.keep_daily, args.keep_weekly, args.keep_monthly)
    if min(policy.last, policy.daily, policy.weekly, policy.monthly) < 0:
        raise UsageError("--keep-* values must be 0 or more")
    if policy.empty():
        raise UsageError("no --keep-* option given; refusing to forget every snapshot")
    repo = _open(_settings(args))
    prune_report = None
    with repo.lock(exclusive=not args.dry_run):  # a dry run deletes nothing (append-only is enough)
        keep, forget = select(repo.list_snapshots(), policy)
        if not args.dry_run:
            for snap in forget:
                repo.forget_snapshot(snap.id)
            if args.prune:
                prune_report = prune(repo)
    if args.json:
        print_json({"keep": [s.id for s in keep], "forget": [s.id for s in forget],
                    "dry_run": args.dry_run,
                    "prune": prune_report.to_dict() if prune_report is not None else None})
    else:
        verb = "would forget" if args.dry_run else "forgot"
        print(f"kept {len(keep)} snapshots, {verb} {len(forget)}")
        for snap in forget:
            print(f"  {snap.short_id} {snap.time.astimezone():%Y-%m-%d %H:%M:%S} {snap.host}")
        if prune_report is not None:
            _print_prune(prune_report)
    return 0


def _print_prune(report: Any) -> None:
    d = report.to_dict()
    print(f"prune: removed {d.get('blobs_removed', 0)} blobs, deleted {d.get('packs_deleted', 0)} packs, "
          f"rewrote {d.get('packs_rewritten', 0)}; freed {human_bytes(d.get('bytes_freed', 0) or 0)}")


def cmd_prune(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.repository.prune import prune

    repo = _open(_settings(args))
    report = prune(repo)
    if args.json:
        print_json(report.to_dict())
    else:
        _print_prune(report)
    return WARNINGS if getattr(report, "warnings", None) else 0
