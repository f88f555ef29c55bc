"""The server's credentials file: which access keys and tokens exist, and the project of each.

TOML, readable by its owner (and at most its group)::

    [[access_keys]]
    ak = "HPUAEXAMPLEAK0000001"
    sk = "..."
    project_id = "f841e01fd2b14e7fa41b6ae7aa6b0594"

    [[tokens]]
    token = "..."
    project_id = "f841e01fd2b14e7fa41b6ae7aa6b0594"

A file that others can read is refused (it holds secret keys); a group-readable one gets a warning.
Tokens are kept by their SHA-256 digest, so looking one up takes the same time whatever it is.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cbr_agent.errors import ConfigError
from cbr_agent.privatefile import check_private

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

@dataclass(frozen=True)
class AccessKey:
    ak: str
    sk: str
    project_id: str


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class Credentials:
    access_keys: dict[str, AccessKey] = field(default_factory=dict)
    #: sha256(token) -> project_id
    tokens: dict[str, str] = field(default_factory=dict)

    def access_key(self, ak: str) -> AccessKey | None:
        return self.access_keys.get(ak)

    def token_project(self, token: str) -> str | None:
        return self.tokens.get(token_digest(token))


def _text(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: '{key}' must be a non-empty string")
    if value != value.strip() or any(ch in value for ch in "\r\n\x00"):
        raise ConfigError(f"{where}: '{key}' has surrounding spaces or control characters")
    return value


def _entries(data: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    entries = data.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"credentials file {path}: '{key}' must be an array of tables ([[{key}]])")
    return entries


def parse_credentials(data: dict[str, Any], path: Path) -> Credentials:
    unknown = set(data) - {"access_keys", "tokens"}
    if unknown:
        raise ConfigError(f"credentials file {path}: unknown key(s) {', '.join(sorted(unknown))}; "
                          "expected [[access_keys]] and [[tokens]] tables")
    creds = Credentials()
    for i, entry in enumerate(_entries(data, "access_keys", path)):
        where = f"credentials file {path}, access_keys[{i}]"
        key = AccessKey(_text(entry, "ak", where), _text(entry, "sk", where),
                        _text(entry, "project_id", where))
        if key.ak in creds.access_keys:
            raise ConfigError(f"{where}: access key {key.ak} appears twice")
        creds.access_keys[key.ak] = key
    for i, entry in enumerate(_entries(data, "tokens", path)):
        where = f"credentials file {path}, tokens[{i}]"
        digest = token_digest(_text(entry, "token", where))
        if digest in creds.tokens:
            raise ConfigError(f"{where}: this token appears twice")
        creds.tokens[digest] = _text(entry, "project_id", where)
    if not creds.access_keys and not creds.tokens:
        raise ConfigError(f"credentials file {path} has no [[access_keys]] and no [[tokens]]; "
                          "add at least one")
    return creds


def load_credentials(path: str | Path) -> Credentials:
    path = Path(path)
    try:
        check_private(path, "credentials file", group_may_read=True)
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"credentials file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read credentials file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"credentials file {path} is not valid TOML: {exc}") from None
    return parse_credentials(data, path)
