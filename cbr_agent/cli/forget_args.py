"""forget's policy options beyond --keep-last/daily/weekly/monthly, and the snapshot filters."""

from __future__ import annotations

import argparse
from typing import Any

from cbr_agent.cli.snapargs import add_filter_options


def add_forget_options(p: argparse.ArgumentParser) -> None:
    for name in ("hourly", "yearly"):
        p.add_argument(f"--keep-{name}", type=int, default=None, metavar="N", help=f"keep {name} N")
    p.add_argument("--keep-within", metavar="DURATION",
                   help="keep every snapshot younger than DURATION counted from the group's newest "
                   "(e.g. 7d, 2w, 6m, 1y6m, 36h)")
    p.add_argument("--keep-tag", action="append", default=[], metavar="TAG[,TAG]",
                   help="keep every snapshot holding all these tags (repeatable: any list)")
    p.add_argument("--group-by", default="host,paths", metavar="host,paths,tags",
                   help="group snapshots by these fields before applying the policy (default host,paths; "
                   "'' for one group)")
    add_filter_options(p, what="consider snapshots")


KEEP_COUNTS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def keep_given(args: argparse.Namespace) -> bool:
    """Whether any --keep-* option was given (0 included)."""
    return (any(getattr(args, f"keep_{name}") is not None for name in KEEP_COUNTS)
            or bool(args.keep_within) or bool(args.keep_tag))


def policy_from_args(args: argparse.Namespace) -> tuple[Any, tuple[str, ...]]:
    """The retention policy and the group-by fields; UsageError for bad values."""
    from cbr_agent.errors import UsageError
    from cbr_agent.repository.retention import GROUP_FIELDS, Policy
    from cbr_agent.timespec import TimeSpecError, parse_duration

    counts = {name: getattr(args, f"keep_{name}") for name in KEEP_COUNTS}
    given = {name: value for name, value in counts.items() if value is not None}
    if any(value < 0 for value in given.values()):
        raise UsageError("--keep-* values must be 0 or more")
    if not keep_given(args):
        raise UsageError("no --keep-* option given; refusing to forget every snapshot")
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
    policy = Policy(within=within, tags=tags, **{name: given.get(name, 0) for name in KEEP_COUNTS})
    if policy.empty():  # as restic: a policy that keeps nothing is refused, never run
        raise UsageError(f"{' '.join(f'--keep-{n} 0' for n in given)} keeps no snapshot at all; "
                         "refusing to forget every snapshot", hint="keep at least one, e.g. --keep-last 1")
    return policy, group_by
