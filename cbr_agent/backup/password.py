"""The repository password: where it comes from, and a generated one for unattended hosts.

Order: ``CBR_AGENT_PASSWORD`` (the ``password`` setting, environment only), then ``password_file``,
then ``repository.password`` next to the configuration file. Never from the command line.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from cbr_agent.config import Settings
from cbr_agent.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_NAME = "repository.password"


def default_password_file(settings: Settings) -> Path:
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


def resolve_password(settings: Settings) -> str | None:
    """The configured password, or None when none is configured anywhere."""
    if settings.password:
        return settings.password
    if settings.password_file:
        return _read(Path(settings.password_file).expanduser(), "password file")
    default = default_password_file(settings)
    if default.exists():
        return _read(default, "password file")
    return None


def require_password(settings: Settings) -> str:
    password = resolve_password(settings)
    if password is None:
        raise ConfigError(
            "no repository password is configured",
            hint=f"set CBR_AGENT_PASSWORD, 'password_file', or create {default_password_file(settings)}",
        )
    return password


def generate_password_file(settings: Settings) -> tuple[str, Path]:
    """Create ``repository.password`` (0600) next to the config file with a strong random password."""
    path = default_password_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path, "password file"), path
    except OSError as exc:
        raise ConfigError(f"cannot create password file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("generated a repository password in %s: keep a copy of it somewhere else, "
                "without it the backups cannot be read", path)
    return password, path
