"""``tag``: add, remove or set the tags of snapshots (a new snapshot object each, the old one deleted)."""

from __future__ import annotations

import argparse

from cbr_agent.cli.snapargs import add_filter_options, open_repository, resolve_snapshots, snapshot_filter


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "tag", parents=[common], help="add, remove or set the tags of snapshots",
        description="Change the tags of the snapshots named, or of every snapshot the --host/--path/--tag "
        "filters select. Each changed snapshot is written anew (same data, new id; 'original' names the "
        "first one) and the old object deleted. --set '' removes every tag.")
    p.add_argument("snapshots", nargs="*", metavar="SNAPSHOT", help="id, prefix or 'latest'")
    p.add_argument("--add", action="append", default=[], metavar="TAG[,TAG]", help="add tags")
    p.add_argument("--remove", action="append", default=[], metavar="TAG[,TAG]", help="remove tags")
    p.add_argument("--set", dest="set_tags", action="append", default=None, metavar="TAG[,TAG]",
                   help="replace every tag by these")
    add_filter_options(p)
    p.add_argument("--json", action="store_true", help="print the changes as JSON")
    p.set_defaults(func=cmd_tag)


def cmd_tag(args: argparse.Namespace) -> int:
    from cbr_agent.cli.output import print_json
    from cbr_agent.errors import UsageError
    from cbr_agent.repository.tags import new_tags, retag, split_tags

    if args.set_tags is not None and (args.add or args.remove):
        raise UsageError("--set cannot be combined with --add or --remove")
    if args.set_tags is None and not (args.add or args.remove):
        raise UsageError("nothing to do: give --add, --remove or --set")
    flt = snapshot_filter(args)
    if not args.snapshots and not flt:
        raise UsageError("name the snapshots to tag, or select them with --host, --path or --tag")
    add, remove = split_tags(args.add), split_tags(args.remove)
    set_to = None if args.set_tags is None else split_tags(t for t in args.set_tags if t)
    repo = open_repository(args)
    results = []
    with repo.lock(exclusive=True):
        for snap in resolve_snapshots(repo, args.snapshots, flt):
            if args.snapshots and flt and not flt.matches(snap):
                continue
            tags = new_tags(snap.tags, add=add, remove=remove, set_to=set_to)
            replacement = retag(repo, snap, tags)
            results.append({"old": snap.id, "new": replacement.id if replacement else None,
                            "tags": tags})
    if args.json:
        print_json(results)
        return 0
    for r in results:
        tags = ", ".join(r["tags"]) or "(none)"
        if r["new"]:
            print(f"snapshot {r['old'][:8]} -> {r['new'][:8]}: tags {tags}")
        else:
            print(f"snapshot {r['old'][:8]} unchanged: tags {tags}")
    if not results:
        print("no snapshot matches")
    return 0
