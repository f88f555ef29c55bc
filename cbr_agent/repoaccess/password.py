"""The repository password: where it comes from, and a generated one for unattended hosts.

Order: ``CBR_AGENT_PASSWORD`` (the ``password`` setting, environment only), then ``password_file``,
then ``repository.password`` in the state dir, then ``repository.password`` next to the configuration
file (where earlier versions generated it: hosts upgraded from them keep using it). Never from the
command line.

A generated password goes into the state dir, never next to the config: the packaged service sees
``/etc`` read-only (``ProtectSystem=strict``) and may write only its state and cache dirs.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cbr_agent.config import Settings
from cbr_agent.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_NAME = "repository.password"


@dataclass(frozen=True)
class Password:
    """A password and where it came from, for messages that must never show the password."""

    value: str
    #: "environment CBR_AGENT_PASSWORD" or "password file /path"
    source: str
    #: the file it was read from, if any
    path: Path | None = None


def default_password_file(settings: Settings) -> Path:
    """Where a generated password is kept: the state dir (writable by the service)."""
    return settings.state_dir / DEFAULT_NAME


def legacy_password_file(settings: Settings) -> Path:
    """Where older versions generated it: next to the config file (read-only under the service)."""
    return settings.config_file.parent / DEFAULT_NAME


def _read(path: Path, what: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", hint="create it or fix 'password_file'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError(f"{what} {path} is empty")
    return password


def find_password(settings: Settings) -> Password | None:
    """The configured password with its source, or None when none is configured anywhere."""
    if settings.password:
        return Password(settings.password, "environment CBR_AGENT_PASSWORD")
    if settings.password_file:
        path = Path(settings.password_file).expanduser()
        return Password(_read(path, "password file"), f"password file {path}", path)
    for path in (default_password_file(settings), legacy_password_file(settings)):
        if path.exists():
            return Password(_read(path, "password file"), f"password file {path}", path)
    return None


def resolve_password(settings: Settings) -> str | None:
    """The configured password, or None when none is configured anywhere."""
    found = find_password(settings)
    return found.value if found is not None else None


def require_password(settings: Settings) -> str:
    password = resolve_password(settings)
    if password is None:
        raise ConfigError(
            "no repository password is configured",
            hint=f"set CBR_AGENT_PASSWORD, 'password_file', or create {default_password_file(settings)}",
        )
    return password


def generate_password_file(settings: Settings, *, announce: bool = True) -> tuple[str, Path]:
    """Create ``repository.password`` (0600) in the state dir with a strong random password; an
    existing one (another process won the race) is read, never overwritten. ``announce=False``: the
    caller tells the user itself (``init`` prints it)."""
    path = default_password_file(settings)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the state dir {path.parent}: {exc.strerror}") from None
    password = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path, "password file"), path
    except OSError as exc:
        raise ConfigError(f"cannot create password file {path}: {exc.strerror}",
                          hint="set CBR_AGENT_PASSWORD or 'password_file' instead") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if announce:
        log.warning("GENERATED A REPOSITORY PASSWORD in %s: keep a copy of it somewhere else, "
                    "without it the backups cannot be restored", path)
    return password, path
