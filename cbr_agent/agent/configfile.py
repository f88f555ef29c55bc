"""Writing the configuration that ``register`` was given, so that the daemon finds it later.

Non-secret keys go to the config file; secrets that came from the environment go to a credentials file
written with mode 0600 (the config file then names it), so a service started without that environment
still authenticates. Both are replaced atomically and only when their content changes, which keeps
``register`` idempotent.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from cbr_agent.agent.statefile import write_bytes_atomic
from cbr_agent.config import CREDENTIAL_KEYS, ENV_PREFIX, SECRET_KEYS, Settings, read_credentials_file
from cbr_agent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CREDENTIALS_NAME = "credentials.toml"


@dataclass(frozen=True)
class Written:
    config_changed: bool
    #: the credentials file, when this call wrote it
    credentials_file: Path | None


def _read_raw(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot update config file {path}: {exc}") from None


def _write_toml(path: Path, data: Mapping[str, Any], mode: int, by: str = "register") -> None:
    header = f"# written by 'cbr-agent {by}'; every key is described in the README\n"
    try:
        write_bytes_atomic(path, (header + tomli_w.dumps(dict(data))).encode("utf-8"), mode=mode)
    except Exception as exc:
        raise ConfigError(f"cannot write {path}: {exc}",
                          hint="run as a user who may write it, or choose --config") from None


def _secret_mode(path: Path) -> int:
    """Keep a file that holds secrets private; keep the mode of others as it is."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o644


def environment_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {key: env[ENV_PREFIX + key.upper()] for key in CREDENTIAL_KEYS
            if env.get(ENV_PREFIX + key.upper())}


def persist_registration(settings: Settings, flags: Mapping[str, Any], *,
                         environ: Mapping[str, str] | None = None, by: str = "register") -> Written:
    """Write ``flags`` (config keys given on the command line) and the environment's secrets;
    ``by`` names the command in the file's header comment."""
    secrets = environment_secrets(environ)
    cred_written: Path | None = None
    values = {k: v for k, v in flags.items() if v is not None and k not in SECRET_KEYS}
    if secrets:
        cred_path = Path(settings.credentials_file or settings.config_file.parent / CREDENTIALS_NAME)
        if _update_credentials(cred_path.expanduser(), secrets, by):
            cred_written = cred_path
        values["credentials_file"] = str(cred_path)
    for key in ("heartbeat_interval",):
        if key in values:
            values[key] = float(values[key])
    path = settings.config_file
    current = _read_raw(path)
    merged = {**current, **values}
    if merged == current and path.exists():
        return Written(False, cred_written)
    mode = 0o600 if any(k in merged for k in SECRET_KEYS) else _secret_mode(path)
    _write_toml(path, merged, mode, by)
    return Written(True, cred_written)


def _update_credentials(path: Path, secrets: Mapping[str, str], by: str) -> bool:
    current = read_credentials_file(path) if path.exists() else {}
    merged = {**current, **secrets}
    if "token" in secrets and "sk" not in secrets:  # a new kind of credential replaces the old one
        merged = {k: v for k, v in merged.items() if k not in ("ak", "sk", "security_token")}
        merged.update(secrets)
    if merged == current and stat.S_IMODE(path.stat().st_mode) == 0o600:
        return False
    _write_toml(path, merged, 0o600, by)
    return True
