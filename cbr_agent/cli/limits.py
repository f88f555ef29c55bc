"""``--limit-upload`` / ``--limit-download`` and opening the configured repository with the storage
options of the configuration (``s3_*``, ``limit_*``): what every command that opens a repository shares.
Standard library only at module level (``--help`` stays fast)."""

from __future__ import annotations

import argparse
from typing import Any

LIMIT_OPTIONS = ("limit_upload", "limit_download")


def add_limits(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit-upload", type=float, metavar="KiB/s",
                   help="limit repository uploads to this many KiB/s (config limit_upload)")
    p.add_argument("--limit-download", type=float, metavar="KiB/s",
                   help="limit repository downloads to this many KiB/s (config limit_download)")


def limit_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The limits given on the command line (None: the configuration's), as settings overrides."""
    return {name: getattr(args, name, None) for name in LIMIT_OPTIONS}


def open_configured(settings: Any, url: str | None = None, password: str | None = None) -> Any:
    """The repository at ``url`` (default: the configured one), opened with the configuration's storage
    options; the password is the configured one unless given."""
    from cbr_agent.repoaccess.password import require_password
    from cbr_agent.repository import Repository
    from cbr_agent.repository.backends import BackendOptions

    return Repository.open(url or settings.repository, password or require_password(settings),
                           options=BackendOptions.from_settings(settings))
