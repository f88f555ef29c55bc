"""``mount MOUNTPOINT``: the snapshots as a read-only FUSE file system, until unmounted."""

from __future__ import annotations

import argparse
import os
import sys

from cbr_agent.cli.limits import add_limits
from cbr_agent.cli.snapargs import add_filter_options, open_repository, snapshot_filter


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "mount", parents=[common], help="browse the snapshots as a read-only file system (FUSE)",
        description="Mount the repository's snapshots read-only at MOUNTPOINT: snapshots/<time>, "
        "hosts/<host>/<time>, tags/<tag>/<time> and ids/<id>, each with a 'latest' link. Runs in the "
        "foreground until unmounted ('fusermount3 -u MOUNTPOINT') or interrupted. Needs the optional "
        "'mount' extra (mfusepy, or fusepy) and libfuse.")
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing empty directory")
    p.add_argument("--allow-other", action="store_true",
                   help="let other users in too (owners and modes of the snapshot are enforced)")
    add_filter_options(p, what="show snapshots")
    add_limits(p)
    p.set_defaults(func=cmd_mount)


def cmd_mount(args: argparse.Namespace) -> int:
    from cbr_agent.errors import CbrAgentError, UsageError
    from cbr_agent.explore.mount import fuse_module, serve
    from cbr_agent.explore.snapfs import SnapshotFS

    mountpoint = os.path.abspath(args.mountpoint)
    if not os.path.isdir(mountpoint):
        raise UsageError(f"mount point {mountpoint} is not a directory", hint="create it first")
    fuse = fuse_module()
    if fuse is None:
        raise UsageError("mount needs a FUSE binding and libfuse, which are not installed",
                         hint="pip install 'cbr-agent[mount]' and install fuse3 (apt/dnf)")
    if not os.path.exists("/dev/fuse"):
        raise CbrAgentError("/dev/fuse does not exist: this system (or container) has no FUSE support")
    repo = open_repository(args)
    flt = snapshot_filter(args)
    fs = SnapshotFS(repo, lambda: flt.apply(repo.list_snapshots()))
    with repo.lock(exclusive=False):  # a prune must not remove packs the mount reads
        print(f"cbr-agent: serving the snapshots of {repo.location} at {mountpoint}; unmount with "
              f"'fusermount3 -u {mountpoint}' or Ctrl-C", file=sys.stderr, flush=True)
        try:
            serve(fuse, fs, mountpoint, allow_other=args.allow_other)
        except RuntimeError as exc:
            raise CbrAgentError(f"cannot mount at {mountpoint}: {exc}",
                                hint="is it empty and not mounted already? is fusermount3 installed?"
                                ) from None
    return 0
