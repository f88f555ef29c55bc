"""forget's policy options beyond --keep-last/daily/weekly/monthly, and the snapshot filters."""

from __future__ import annotations

import argparse
from typing import Any

from cbr_agent.cli.snapargs import add_filter_options


def add_forget_options(p: argparse.ArgumentParser) -> None:
    for name in ("hourly", "yearly"):
        p.add_argument(f"--keep-{name}", type=int, default=0, metavar="N", help=f"keep {name} N")
    p.add_argument("--keep-within", metavar="DURATION",
                   help="keep every snapshot younger than DURATION counted from the group's newest "
                   "(e.g. 7d, 2w, 6m, 1y6m, 36h)")
    p.add_argument("--keep-tag", action="append", default=[], metavar="TAG[,TAG]",
                   help="keep every snapshot holding all these tags (repeatable: any list)")
    p.add_argument("--group-by", default="host,paths", metavar="host,paths,tags",
                   help="group snapshots by these fields before applying the policy (default host,paths; "
                   "'' for one group)")
    add_filter_options(p, what="consider snapshots")


def policy_from_args(args: argparse.Namespace) -> tuple[Any, tuple[str, ...]]:
    """The retention policy and the group-by fields; UsageError for bad values."""
    from cbr_agent.backup.retention import GROUP_FIELDS, Policy
    from cbr_agent.errors import UsageError
    from cbr_agent.timespec import TimeSpecError, parse_duration

    counts = {name: getattr(args, f"keep_{name}") for name in
              ("last", "hourly", "daily", "weekly", "monthly", "yearly")}
    if min(counts.values()) < 0:
        raise UsageError("--keep-* values must be 0 or more")
    within = None
    if args.keep_within:
        try:
            within = parse_duration(args.keep_within)
        except TimeSpecError as exc:
            raise UsageError(f"--keep-within: {exc}") from None
    tags = tuple(frozenset(t for t in spec.split(",") if t) for spec in args.keep_tag)
    if any(not t for t in tags):
        raise UsageError("--keep-tag needs at least one tag")
    group_by = tuple(g.strip() for g in args.group_by.split(",") if g.strip())
    bad = [g for g in group_by if g not in GROUP_FIELDS]
    if bad:
        raise UsageError(f"--group-by {args.group_by!r}: unknown field {bad[0]!r} (use host, paths, tags)")
    policy = Policy(within=within, tags=tags, **counts)
    if policy.empty():
        raise UsageError("no --keep-* option given; refusing to forget every snapshot")
    return policy, group_by
