"""``repair index`` and ``repair snapshots``: make intact data restorable again with the tool.

Both take the exclusive lock (like prune) and print every action they take, one line each.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cbr_agent.cli.exitcodes import WARNINGS
from cbr_agent.cli.limits import add_limits


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    repair = subparsers.add_parser(
        "repair", parents=[common], help="rebuild the index, or repair damaged snapshots",
        description="Repair a damaged repository. 'repair index' rebuilds the index from the pack headers "
        "(when index files are lost or damaged); 'repair snapshots' removes snapshots that cannot be read "
        "and rewrites those with damaged directories or files, leaving the damaged entries out.")
    sub = repair.add_subparsers(dest="repair_command", metavar="WHAT", required=True)
    index = sub.add_parser(
        "index", parents=[common], help="rebuild the index from the pack headers",
        description="Read the header of every pack (packs are only read), write a new index, then remove "
        "the old index files. Exit 3 when some pack could not be indexed (each is named).")
    index.add_argument("--json", action="store_true", help="print the report as JSON")
    add_limits(index)
    index.set_defaults(func=cmd_repair_index)
    snaps = sub.add_parser(
        "snapshots", parents=[common], help="remove or rewrite damaged snapshots",
        description="Remove snapshots that cannot be read; rewrite snapshots whose directory listings or "
        "file data are partly missing or damaged, without the damaged entries (the new snapshot is "
        "tagged 'repaired' and lists what was removed). Their data goes with 'prune'.")
    snaps.add_argument("--dry-run", action="store_true", help="only say what would be done")
    snaps.add_argument("--read-data", action="store_true",
                       help="also read every data blob the snapshots use (finds damaged, not only "
                       "missing, file data)")
    snaps.add_argument("--json", action="store_true", help="print the report as JSON")
    add_limits(snaps)
    snaps.set_defaults(func=cmd_repair_snapshots)


def _open(args: argparse.Namespace) -> Any:
    from cbr_agent.cli.snapargs import open_repository

    return open_repository(args)


def cmd_repair_index(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.repository.repair import rebuild_index

    repo = _open(args)
    with repo.lock(exclusive=True):
        report = rebuild_index(repo)
    if args.json:
        print_json(report.to_dict())
    else:
        for line in report.actions:
            print(line)
        for line in report.warnings:
            print(f"warning: {line}", file=sys.stderr)
    return WARNINGS if report.warnings else 0


def cmd_repair_snapshots(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.repository.repair import repair_snapshots

    repo = _open(args)
    with repo.lock(exclusive=True):
        report = repair_snapshots(repo, dry_run=args.dry_run, read_data=args.read_data)
    if args.json:
        print_json(report.to_dict())
    else:
        would = "would be " if args.dry_run else ""
        for action in report.actions:
            if action.action == "remove":
                print(f"snapshot {action.snapshot}: {action.reason}: {would}removed")
            else:
                new = f" as {action.new_id}" if action.new_id else ""
                print(f"snapshot {action.snapshot}: {would}rewritten{new} without:")
                for entry in action.removed:
                    print(f"  {_printable(entry)}")
        for line in report.errors:
            print(f"error: {line}", file=sys.stderr)
        print(f"{report.snapshots} snapshots, {len(report.actions)} damaged"
              + (" (dry run, nothing changed)" if args.dry_run else "")
              + ("; run 'cbr-agent prune' to free the space of what was removed"
                 if report.actions and not args.dry_run else ""))
    return 1 if report.errors else 0


def _printable(text: str) -> str:
    from cbr_agent.cli.repo import printable

    return printable(text)
