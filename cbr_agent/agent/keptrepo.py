"""The daemon keeps its repository open between scheduled backups.

Opening a repository derives the key from the password (scrypt, deliberately slow) and reads every index
file: on the 200,000-file benchmark tree that is about 0.25 s, five times what a scheduled backup of an
unchanged tree costs once the file change journal leads the walk. Kept open, each backup only reads the
index files written since (:meth:`Repository.refresh_index`). Anything unexpected drops it: the next
backup opens the repository afresh, as the CLI always does.

With it go the listings of the directories that journal-led backups edited
(:class:`~cbr_agent.backup.keptlistings.KeptListings`): the next backup that finds one of them changed
again takes its previous nodes from memory instead of reading its tree from the repository.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cbr_agent.config import Settings

log = logging.getLogger(__name__)


def _identity(settings: Settings) -> tuple[Any, ...]:
    """What decides which repository, with which password: a change of any reopens it."""
    return (settings.repository, settings.password, settings.password_file, str(settings.state_dir))


class KeptRepository:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._repo: Any = None
        self._identity: tuple[Any, ...] | None = None
        self._listings: Any = None

    def get(self, settings: Settings) -> Any:
        """The open repository for ``settings``, brought up to date; opened (and, at the default
        location, created) when there is none yet. Raises what opening raises."""
        from cbr_agent.repoaccess.configured import open_repository

        with self._lock:
            wanted = _identity(settings)
            if self._repo is not None and self._identity == wanted:
                try:
                    self._repo.refresh_index()
                    return self._repo
                except Exception as exc:  # gone, replaced, unreadable: open it again (and say why there)
                    log.debug("reopening the repository: %s", exc)
            self._repo = self._listings = None
            repo = open_repository(settings, create_default=True)
            self._repo, self._identity = repo, wanted
            return repo

    def listings(self) -> Any:
        """The kept listings of the repository :meth:`get` gave (empty after it was opened again)."""
        from cbr_agent.backup.keptlistings import KeptListings

        with self._lock:
            if self._listings is None:
                self._listings = KeptListings()
            return self._listings

    def drop(self) -> None:
        with self._lock:
            self._repo = self._listings = None
