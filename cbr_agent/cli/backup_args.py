"""backup's one-off options: ``--tag``, ``--exclude``, ``--exclude-file``, ``--files-from``.

Excludes use the grammar of ``path add --exclude`` (:mod:`cbr_agent.pathrules`): a glob applies to
every backup path; an absolute path applies to the backup path that contains it. Files of patterns or
paths hold one per line; blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def add_backup_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tag", action="append", default=[], metavar="TAG[,TAG]",
                   help="tag the snapshot (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="also exclude this glob or absolute path, for this run (repeatable)")
    p.add_argument("--exclude-file", action="append", default=[], metavar="FILE",
                   help="also exclude the patterns in FILE, one per line (repeatable)")
    p.add_argument("--files-from", action="append", default=[], metavar="FILE",
                   help="back up the paths listed in FILE, one per line (repeatable)")


def read_lines(path: str, what: str) -> list[str]:
    """The meaningful lines of a list file (no blank lines, no ``#`` comments, no line ends)."""
    from cbr_agent.errors import UsageError

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    out = []
    for line in raw.split(b"\n"):
        text = os.fsdecode(line.rstrip(b"\r"))
        if text.strip() and not text.lstrip().startswith("#"):
            out.append(text)
    return out


def cli_excludes(args: argparse.Namespace) -> list[str]:
    patterns = list(getattr(args, "exclude", []) or [])
    for path in getattr(args, "exclude_file", []) or []:
        patterns.extend(p.strip() for p in read_lines(path, "exclude file"))
    return patterns


def cli_paths(args: argparse.Namespace) -> list[str]:
    paths = list(args.paths)
    for path in getattr(args, "files_from", []) or []:
        paths.extend(read_lines(path, "files-from list"))
    return [os.path.abspath(p) for p in paths]


def with_excludes(roots: list[Any], patterns: list[str]) -> list[Any]:
    """``(path, excludes)`` pairs: each root's own excludes plus the command line's that apply to it."""
    from cbr_agent.errors import UsageError
    from cbr_agent.pathrules import PathRuleError, is_inside, normalize_glob, normalize_path

    if not patterns:
        return roots
    pairs = []
    for item in roots:
        if isinstance(item, str):
            pairs.append((item, []))
        elif isinstance(item, tuple):
            pairs.append((item[0], list(item[1])))
        else:
            pairs.append((item.dir_path, list(item.excludes)))
    try:
        normal_roots = [normalize_path(path) for path, _ in pairs]
        for pattern in patterns:
            if pattern.startswith("/"):
                target = normalize_path(pattern)
                owners = [i for i, root in enumerate(normal_roots) if is_inside(target, root)
                          and target != root]
                if not owners:
                    raise UsageError(f"--exclude {pattern!r} is not inside any backup path")
                for i in owners:
                    pairs[i][1].append(target)
            else:
                glob = normalize_glob(pattern)
                for _path, excludes in pairs:
                    excludes.append(glob)
    except PathRuleError as exc:
        raise UsageError(str(exc)) from None
    return [(path, tuple(excludes)) for path, excludes in pairs]


def backup_tags(args: argparse.Namespace) -> list[str]:
    from cbr_agent.repository.tags import split_tags

    return split_tags(getattr(args, "tag", []) or [])
