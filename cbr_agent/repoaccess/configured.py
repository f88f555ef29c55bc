"""Opening the configured repository from Settings: the one place that ties the configuration (URL,
password, storage options) to a repository, for the CLI, the daemon and backup runs."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from cbr_agent.config import Settings
from cbr_agent.errors import RepositoryNotFound
from cbr_agent.repoaccess.password import Password, find_password, generate_password_file, require_password

log = logging.getLogger(__name__)


def _default_repository(settings: Settings) -> bool:
    return settings.repository == (settings.state_dir / "repository").absolute().as_uri()


def open_repository(settings: Settings, *, create_default: bool = False) -> Any:
    """Open the configured repository. With ``create_default``, a missing repository at the default
    location is created (generating a password file in the state dir if no password is configured):
    that is how the daemon's first scheduled backup and ``cbr-agent run --once`` work on a fresh
    machine. A missing repository elsewhere is an error, never silently re-created (a NAS that is not
    mounted must not get a new empty repository)."""
    from cbr_agent.repository import Repository
    from cbr_agent.repository.backends import BackendOptions

    options = BackendOptions.from_settings(settings)

    if create_default and _default_repository(settings):
        found = find_password(settings)
        try:
            if found is None:
                raise RepositoryNotFound("no password yet")
            return Repository.open(settings.repository, found.value, options=options)
        except RepositoryNotFound:
            if found is None:
                password, path = generate_password_file(settings)
                found = Password(password, f"password file {path} (generated)", path)
            with contextlib.suppress(RepositoryNotFound):
                return Repository.open(settings.repository, found.value, options=options)
            repo = Repository.init(settings.repository, found.value, options=options)
            log.warning("created the repository %s; its password is the %s: keep a copy of it somewhere "
                        "else, without it the backups cannot be restored", settings.repository,
                        found.source)
            return repo
    return Repository.open(settings.repository, require_password(settings), options=options)
