"""Commands that look into snapshots without restoring them: find, diff, stats, dump.

Module-level imports are standard library only; handlers import the engine when they run.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cbr_agent.cli.limits import add_limits
from cbr_agent.cli.output import plural
from cbr_agent.cli.snapargs import (
    Status,
    add_filter_options,
    json_text,
    local_time,
    open_repository,
    resolve_snapshot,
    resolve_snapshots,
    snapshot_filter,
)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "find", parents=[common], help="find files in snapshots by name or path pattern",
        description="List the entries of every snapshot (or of the snapshots named) that match one of "
        "the patterns, without restoring anything. A pattern without '/' matches names at any depth "
        "(*.conf); one starting with '/' matches whole paths (/etc/**/*.conf); any other matches the "
        "path relative to the snapshot's backup paths, as an exclude would (.ssh/*). '*' and '?' stay "
        "within one name, '**' crosses directories.")
    p.add_argument("patterns", nargs="+", metavar="PATTERN", help="glob (the exclude grammar)")
    p.add_argument("--snapshot", "-s", action="append", default=[], metavar="ID",
                   help="only this snapshot (id, prefix or 'latest'; repeatable)")
    p.add_argument("--newest", metavar="TIME",
                   help="only entries modified at or before TIME (2026-12-01, '2026-12-01 08:30', or 7d "
                   "ago)")
    p.add_argument("--oldest", metavar="TIME", help="only entries modified at or after TIME")
    add_filter_options(p)
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per snapshot")
    add_limits(p)
    p.set_defaults(func=cmd_find)

    p = subparsers.add_parser(
        "diff", parents=[common], help="show what changed between two snapshots",
        description="List added (+), removed (-), changed (M: contents, T: type) entries and, with "
        "--metadata, entries whose mode, owner, times or extended attributes changed (U); then the "
        "counts and the bytes of data added and removed.")
    p.add_argument("old", metavar="SNAPSHOT1", help="the older snapshot (id, prefix or 'latest')")
    p.add_argument("new", metavar="SNAPSHOT2", help="the newer snapshot")
    p.add_argument("--metadata", action="store_true", help="also list metadata-only changes (U)")
    p.add_argument("--json", action="store_true", help="print the changes and counts as JSON")
    add_limits(p)
    p.set_defaults(func=cmd_diff)

    p = subparsers.add_parser(
        "stats", parents=[common], help="sizes, deduplication and compression of snapshots",
        description="restore-size: what restoring would write; files-by-contents: files with distinct "
        "contents; raw-data: the distinct blobs used, plaintext and stored size, compression and "
        "deduplication ratios, blob and pack counts. Without SNAPSHOT, over every snapshot (the "
        "filters apply).")
    p.add_argument("snapshots", nargs="*", metavar="SNAPSHOT", help="id, prefix or 'latest'")
    p.add_argument("--mode", choices=("restore-size", "files-by-contents", "raw-data"),
                   default="restore-size", help="what to count (default restore-size)")
    add_filter_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_limits(p)
    p.set_defaults(func=cmd_stats)

    p = subparsers.add_parser(
        "dump", parents=[common], help="write a file of a snapshot to stdout, or a directory as tar",
        description="A regular file is written as it is; a directory (with everything below it) or any "
        "other entry is written as a pax tar stream keeping modes, owners, times, links, devices and "
        "extended attributes. Refuses to write a tar stream to a terminal.")
    p.add_argument("snapshot", metavar="SNAPSHOT", help="id, prefix or 'latest'")
    p.add_argument("path", metavar="PATH", help="path inside the snapshot ('/' for all of it)")
    p.add_argument("--tar", action="store_true", help="a tar stream even for a regular file")
    add_filter_options(p, what="snapshots ('latest' among them)")
    add_limits(p)
    p.set_defaults(func=cmd_dump)


def _human_bytes(n: float) -> str:
    from cbr_agent.cli.repo import human_bytes

    return str(human_bytes(n))


def _printable(text: str) -> str:
    from cbr_agent.cli.repo import printable

    return str(printable(text))


def _time_option(value: str | None, option: str) -> Any:
    if value is None:
        return None
    from cbr_agent.errors import UsageError
    from cbr_agent.timespec import TimeSpecError, parse_time

    try:
        return parse_time(value)
    except TimeSpecError as exc:
        raise UsageError(f"{option}: {exc}") from None


# ---------------------------------------------------------------------------------------------- find
def _entry_dict(path: str, node: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime, timezone

    out = {"path": json_text(path), "type": node.get("type"), "size": node.get("size", 0),
           "mode": node.get("mode"), "uid": node.get("uid"), "gid": node.get("gid"),
           "user": node.get("user"), "group": node.get("group"),
           "mtime": datetime.fromtimestamp(node.get("mtime_ns", 0) / 1e9, timezone.utc).isoformat()}
    if node.get("type") == "symlink":
        out["target"] = json_text(str(node.get("target", "")))
    return out


def cmd_find(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.errors import UsageError
    from cbr_agent.explore.find import FindFilter, compile_pattern, find_in_snapshots
    from cbr_agent.pathrules import PathRuleError

    try:
        patterns = [compile_pattern(p) for p in args.patterns]
    except PathRuleError as exc:
        raise UsageError(f"find pattern: {str(exc).replace('exclude ', '', 1)}") from None
    flt = FindFilter(patterns, newest=_time_option(args.newest, "--newest"),
                     oldest=_time_option(args.oldest, "--oldest"))
    repo = open_repository(args)
    snaps = resolve_snapshots(repo, args.snapshot, snapshot_filter(args))
    status = Status(not args.json)

    def progress(done: int, total: int) -> None:
        status(f"searching snapshot {done + 1 if done < total else total} of {total}")

    results = []
    hits = 0
    try:
        for found in find_in_snapshots(repo, snaps, flt, progress):
            status.clear()
            hits += 1
            if args.json:
                results.append({"snapshot": found.snapshot.id, "time": found.snapshot.to_dict()["time"],
                                "host": found.snapshot.host,
                                "matches": [_entry_dict(p, n) for p, n in found.matches]})
                continue
            snap = found.snapshot
            print(f"snapshot {snap.short_id} of {local_time(snap.time)} ({snap.host}): "
                  f"{len(found.matches)} matching")
            for path, node in found.matches:
                when = _mtime_text(node)
                print(f"  {node.get('type', '?'):<8} {node.get('size', 0):>12} {when} {_printable(path)}")
    finally:
        status.clear()
    if args.json:
        print_json(results)
    elif not hits:
        print(f"no entry matches in {len(snaps)} snapshots")
    return 0


def _mtime_text(node: dict[str, Any]) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(node.get("mtime_ns", 0) / 1e9).strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------------------------------- diff
def cmd_diff(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.explore.diff import Differ

    repo = open_repository(args)
    old, new = resolve_snapshot(repo, args.old), resolve_snapshot(repo, args.new)
    status = Status(not args.json)
    differ = Differ(repo, metadata=args.metadata,
                    on_compared=lambda n: status(f"{plural(n, 'directory', 'directories')} compared"))
    changes = []
    try:
        for change in differ.changes(old.tree, new.tree):
            if args.json:
                changes.append({"kind": change.kind, "path": json_text(change.path), "type": change.type})
            else:
                status.clear()
                suffix = "/" if change.type == "dir" else ""
                print(f"{change.kind}    {_printable(change.path)}{suffix}")
    finally:
        status.clear()
    stats = differ.stats
    if args.json:
        print_json({"old": old.id, "new": new.id, "changes": changes, "stats": stats.to_dict()})
        return 0
    def counts(by_type: dict[str, int]) -> str:
        return ", ".join(f"{n} {t}" for t, n in sorted(by_type.items())) or "nothing"

    print(f"comparing snapshot {old.short_id} to {new.short_id}:")
    print(f"  added:    {counts(stats.added)}")
    print(f"  removed:  {counts(stats.removed)}")
    print(f"  changed:  {stats.changed} contents, {stats.type_changed} types"
          + (f", {stats.metadata_changed} metadata" if args.metadata else ""))
    print(f"  data:     +{_human_bytes(stats.bytes_added)} ({stats.blobs_added} blobs), "
          f"-{_human_bytes(stats.bytes_removed)} ({stats.blobs_removed} blobs)")
    return 0


# ---------------------------------------------------------------------------------------------- stats
def cmd_stats(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.explore.stats import snapshot_stats

    repo = open_repository(args)
    snaps = resolve_snapshots(repo, args.snapshots, snapshot_filter(args))
    status = Status(not args.json)
    trees = [0]

    def tick() -> None:
        trees[0] += 1
        status(f"{trees[0]} directories read")

    try:
        stats = snapshot_stats(repo, snaps, args.mode, tick)
    finally:
        status.clear()
    if args.json:
        print_json(stats.to_dict())
        return 0
    print(f"stats in {stats.mode} mode over {stats.snapshots} snapshots:")
    if stats.mode == "raw-data":
        print(f"  blobs:              {stats.blobs} ({stats.data_blobs} data, {stats.tree_blobs} trees) "
              f"in {stats.packs} packs")
        print(f"  plaintext size:     {_human_bytes(stats.raw_size)}")
        print(f"  stored size:        {_human_bytes(stats.stored_size)}")
        ratio = stats.compression_ratio
        print(f"  compression ratio:  {ratio:.2f}x" if ratio else "  compression ratio:  -")
        dedup = stats.dedup_ratio
        print(f"  deduplication:      {dedup:.2f}x (restore size {_human_bytes(stats.restore_size)})"
              if dedup else "  deduplication:      -")
        if stats.missing_blobs:
            print(f"  missing blobs:      {stats.missing_blobs} (run 'cbr-agent check')")
    else:
        print(f"  files:              {stats.total_file_count}")
        print(f"  total size:         {_human_bytes(stats.total_size)}")
    print(f"  repository:         {stats.repository_packs} packs, {_human_bytes(stats.repository_size)}")
    return 0


# ---------------------------------------------------------------------------------------------- dump
def cmd_dump(args: argparse.Namespace) -> int:
    from cbr_agent.cli import progress as progress_line
    from cbr_agent.errors import UsageError
    from cbr_agent.explore.dump import NotInSnapshot, dump_progress, find_entry, write_file, write_tar

    repo = open_repository(args)
    snap = resolve_snapshot(repo, args.snapshot, snapshot_filter(args))
    try:
        node = find_entry(repo, snap, args.path)
    except NotInSnapshot as exc:
        raise UsageError(f"{_printable(str(exc))} is not in snapshot {snap.short_id}",
                         hint=f"see 'cbr-agent ls {snap.short_id}'") from None
    out = sys.stdout.buffer
    as_file = node.get("type") == "file" and not args.tar
    if not as_file and sys.stdout.isatty():
        raise UsageError("refusing to write a tar stream to a terminal",
                         hint="redirect it: cbr-agent dump SNAPSHOT PATH > out.tar")
    counts = dump_progress(node)
    # the line goes to stderr, and only when stdout is not that terminal too (the data would mix with it)
    shown = progress_line.wanted(args) and not sys.stdout.isatty()
    with progress_line.polling(lambda t: progress_line.describe(counts, t), enabled=shown):
        if as_file:
            write_file(repo, node, args.path, out, counts)
        else:
            write_tar(repo, snap, args.path, out, counts)
        out.flush()
    return 0
