"""restore's selection and checking options: snapshot filters for ``latest``, ``--include``,
``--exclude``, ``--verify``."""

from __future__ import annotations

import argparse
from typing import Any

from cbr_agent.cli.snapargs import add_filter_options


def add_restore_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--include", action="append", default=[], metavar="PATTERN",
                   help="restore only entries matching PATTERN (the exclude grammar; repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="leave out entries matching PATTERN and everything below them (repeatable)")
    p.add_argument("--verify", action="store_true",
                   help="read every restored file back and compare it with the snapshot")
    add_filter_options(p, what="snapshots ('latest' among them)", path_option="--snapshot-path")


def verify(repo: Any, snap: Any, args: argparse.Namespace, progress: Any = None) -> Any:
    """Read the restored files back (the same selection the restore used), counted in ``progress``."""
    from cbr_agent.restore.select import (
        compile_patterns,
        exclude_predicate,
        include_matches,
    )
    from cbr_agent.restore.verify import verify_restore

    excluded = exclude_predicate(compile_patterns(args.exclude, "--exclude"), snap.paths)
    paths = args.path or ["/"]
    if args.include:
        paths = include_matches(repo, snap.tree, snap.paths, compile_patterns(args.include, "--include"),
                                paths, excluded)
    return verify_restore(repo, snap.tree, args.target, paths, excluded, progress)
