"""``copy --from-repository URL [SNAPSHOT...]``: copy snapshots from another repository (another key)
into the configured one. The source password comes from ``--from-password-file FILE`` or
``CBR_AGENT_FROM_PASSWORD``; never from the command line."""

from __future__ import annotations

import argparse
import os

from cbr_agent.cli.limits import add_limits
from cbr_agent.cli.snapargs import Status, add_filter_options, resolve_snapshots, snapshot_filter

FROM_PASSWORD_ENV = "CBR_AGENT_FROM_PASSWORD"


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "copy", parents=[common], help="copy snapshots from another repository into this one",
        description="Copy the snapshots named (default: every snapshot the filters select) from the "
        "repository at --from-repository into the configured one. The two have different keys: each "
        "blob is read from the source once, re-encrypted, and stored unless the destination has it. "
        "Snapshots copied before are skipped. The source password comes from --from-password-file or "
        f"{FROM_PASSWORD_ENV}.")
    p.add_argument("snapshots", nargs="*", metavar="SNAPSHOT", help="source snapshot id, prefix or 'latest'")
    p.add_argument("--from-repository", required=True, metavar="URL", help="the source repository")
    p.add_argument("--from-password-file", metavar="FILE",
                   help=f"read the source password from FILE (else {FROM_PASSWORD_ENV})")
    add_filter_options(p, what="copy snapshots")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_limits(p)
    p.set_defaults(func=cmd_copy)


def _from_password(args: argparse.Namespace) -> str:
    from cbr_agent.errors import ConfigError, UsageError

    if args.from_password_file:
        try:
            with open(args.from_password_file, encoding="utf-8") as fh:
                password = fh.read().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the source password file {args.from_password_file}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
    else:
        password = os.environ.get(FROM_PASSWORD_ENV, "")
    if not password:
        raise UsageError("no password for the source repository",
                         hint=f"set {FROM_PASSWORD_ENV} or pass --from-password-file FILE")
    return password


def cmd_copy(args: argparse.Namespace) -> int:
    from cbr_agent.cli.context import settings_from_args
    from cbr_agent.cli.limits import limit_overrides, open_configured
    from cbr_agent.cli.output import print_json
    from cbr_agent.errors import UsageError, WrongPassword
    from cbr_agent.repository.copy import copy_snapshots

    settings = settings_from_args(args, **limit_overrides(args))
    try:  # the source is read with the same storage options (s3_*, limits) as the destination
        source = open_configured(settings, args.from_repository, _from_password(args))
    except WrongPassword as exc:
        raise WrongPassword(f"source: {exc.message}",
                            hint=f"check {FROM_PASSWORD_ENV} or --from-password-file") from None
    destination = open_configured(settings)
    if source.id == destination.id:
        raise UsageError("the source and the destination are the same repository")
    status = Status(not args.json)

    def progress(result, done: int, total: int) -> None:  # type: ignore[no-untyped-def]
        status(f"snapshot {min(done + 1, total)} of {total}: {result.blobs_copied} blobs copied, "
               f"{result.trees_read} directories read")

    map_path = settings.state_dir / "copy" / f"{source.id[:16]}-{destination.id[:16]}.sqlite"
    with source.lock(exclusive=False), destination.lock(exclusive=False):
        snaps = resolve_snapshots(source, args.snapshots, snapshot_filter(args))
        try:
            result = copy_snapshots(source, destination, snaps, map_path=map_path, progress=progress)
        finally:
            status.clear()
    if args.json:
        print_json(result.to_dict())
        return 0
    from cbr_agent.cli.repo import human_bytes

    for src, dst in result.copied:
        print(f"snapshot {src[:8]} copied as {dst[:8]}")
    for src, dst in result.skipped:
        print(f"snapshot {src[:8]} is already here as {dst[:8]}")
    print(f"copied {len(result.copied)} snapshots ({len(result.skipped)} already here): "
          f"{result.blobs_copied} new blobs, {human_bytes(result.bytes_copied)}; "
          f"{result.blobs_present} blobs were already here")
    return 0
