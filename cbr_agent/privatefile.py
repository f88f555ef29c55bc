"""Files that hold secrets must be private to their owner.

One check, shared by the server's credentials file and the agent's config and credentials files: a file
that other users can read is refused with one line naming it and the fix (``chmod 600 FILE``). Group
access is refused too unless the caller allows it (the server's credentials file may be shared with a
service group; then it is only a warning).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cbr_agent.errors import ConfigError

log = logging.getLogger(__name__)


def check_private(path: Path, what: str, *, group_may_read: bool = False,
                  st: os.stat_result | None = None) -> None:
    """Raise :class:`ConfigError` when ``path`` (described as ``what``, e.g. "config file") is open to
    other users; ``st`` is its stat when the caller has it already."""
    mode = stat.S_IMODE((st or path.stat()).st_mode)
    others = mode & stat.S_IRWXO
    group = mode & stat.S_IRWXG
    if others or (group and not group_may_read):
        who = "other users" if others else "its group"
        raise ConfigError(f"{what} {path} holds secrets and is accessible by {who} (mode {mode:o}); "
                          f"run 'chmod 600 {path}'")
    if group:
        log.warning("%s %s is readable by its group (mode %o); 'chmod 600' it unless that group is "
                    "meant to read it", what, path, mode)
