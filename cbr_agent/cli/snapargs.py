"""What the snapshot commands share: opening the repository, snapshot filters and references, a
progress line, and JSON-safe text. Standard library only at module level (``--help`` stays fast)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any


def add_filter_options(p: argparse.ArgumentParser, *, what: str = "snapshots",
                       path_option: str = "--path") -> None:
    p.add_argument("--host", action="append", default=[], metavar="HOST",
                   help=f"only {what} of this host (repeatable: any of them)")
    p.add_argument(path_option, dest="filter_path", action="append", default=[], metavar="PATH",
                   help=f"only {what} whose backup paths include PATH (repeatable: all of them)")
    p.add_argument("--tag", dest="filter_tag", action="append", default=[], metavar="TAG[,TAG]",
                   help=f"only {what} holding every tag of the list (repeatable: any list)")


def snapshot_filter(args: argparse.Namespace) -> Any:
    from cbr_agent.explore.filters import SnapshotFilter

    return SnapshotFilter.of(getattr(args, "host", []) or [], getattr(args, "filter_path", []) or [],
                             getattr(args, "filter_tag", []) or [])


def open_repository(args: argparse.Namespace) -> Any:
    from cbr_agent.cli.context import settings_from_args
    from cbr_agent.cli.limits import limit_overrides, open_configured

    return open_configured(settings_from_args(args, **limit_overrides(args)))


def resolve_snapshot(repo: Any, ref: str, flt: Any = None) -> Any:
    """A snapshot by id, unique prefix or ``latest`` (the newest one the filter lets through)."""
    from cbr_agent.errors import RepositoryError

    if ref == "latest" and flt:
        snaps = flt.apply(repo.list_snapshots())
        if not snaps:
            raise RepositoryError("no snapshot matches the --host/--path/--tag filter",
                                  hint="list them with 'cbr-agent snapshots'")
        return snaps[-1]
    return repo.find_snapshot(ref)


def resolve_snapshots(repo: Any, refs: list[str], flt: Any = None) -> list[Any]:
    """The snapshots named (every one the filter lets through when none is named), oldest first."""
    if not refs:
        return list((flt.apply if flt else list)(repo.list_snapshots()))
    seen: dict[str, Any] = {}
    for ref in refs:
        snap = resolve_snapshot(repo, ref, flt)
        seen.setdefault(snap.id, snap)
    return sorted(seen.values(), key=lambda s: (s.time, s.id or ""))


def latest_of_groups(snapshots: list[Any], n: int) -> list[Any]:
    """The ``n`` newest snapshots of each host and path set (all of them when ``n`` is 0)."""
    if n <= 0:
        return snapshots
    from cbr_agent.repository.retention import group_key

    counts: dict[tuple[Any, ...], int] = {}
    keep: set[int] = set()
    for snap in reversed(snapshots):
        key = group_key(snap, ("host", "paths"))
        if counts.get(key, 0) < n:
            counts[key] = counts.get(key, 0) + 1
            keep.add(id(snap))
    return [s for s in snapshots if id(s) in keep]


def local_time(t: Any) -> str:
    return str(t.astimezone().strftime("%Y-%m-%d %H:%M:%S"))


def json_text(text: str) -> str:
    """Names that are not UTF-8 as JSON-safe text (undecodable bytes shown as \\xNN)."""
    from cbr_agent.cli.repo import printable

    return printable(text) if any(0xDC80 <= ord(c) <= 0xDCFF for c in text) else text


class Status:
    """A one-line progress display on stderr, only on a terminal; at most five updates a second."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0
        self._width = 0

    def __call__(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        sys.stderr.write("\r" + text.ljust(self._width))
        sys.stderr.flush()
        self._width = len(text)

    def clear(self) -> None:
        if self.enabled and self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()
            self._width = 0
