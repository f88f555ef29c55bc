"""Key files of a repository: list, add, remove, change a password (no data is re-encrypted).

Every key file wraps the same master key with a different password. Removing a key refuses the last
one and the one that opened the repository (so a typo cannot lock the caller out); changing a password
writes the new key file first and removes the old one after, so a crash in between leaves both.
Removals run under the exclusive lock: two concurrent removals cannot take the last two keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cbr_agent.crypto import KdfParams, KeyFileDamaged, verify_key_file
from cbr_agent.errors import RepositoryError, UsageError

if TYPE_CHECKING:
    from cbr_agent.repository.repo import Repository


@dataclass(frozen=True)
class KeyInfo:
    id: str
    created: str | None
    host: str | None
    current: bool
    kdf: str | None = None
    damaged: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_keys(repo: Repository) -> list[KeyInfo]:
    """Every key file, oldest first (by its recorded creation time)."""
    out = []
    for name, _size in repo.backend.list("keys"):
        try:
            raw = repo.backend.get("keys/" + name)
        except FileNotFoundError:
            continue
        damaged = None
        body: dict[str, Any] = {}
        try:
            verify_key_file(raw)
            body = json.loads(raw)
        except KeyFileDamaged as exc:
            damaged = str(exc)
        kdf = f"scrypt n={body['n']} r={body['r']} p={body['p']}" if body else None
        out.append(KeyInfo(name, body.get("created"), body.get("host"), name == repo.key_name, kdf,
                           damaged))
    out.sort(key=lambda k: (k.created or "", k.id))
    return out


def resolve_key(repo: Repository, ref: str) -> str:
    """A key file name from a full name or a unique prefix."""
    ref = ref.lower()
    names = [name for name, _size in repo.backend.list("keys") if name.startswith(ref)] if ref else []
    if not names:
        raise RepositoryError(f"no key matches {ref!r}", hint="list them with 'cbr-agent key list'")
    if len(names) > 1:
        raise RepositoryError(f"key id prefix {ref!r} is ambiguous ({len(names)} keys)")
    return names[0]


def add_key(repo: Repository, password: str, kdf: KdfParams | None = None) -> str:
    return repo.add_key(password, kdf=kdf)


def remove_key(repo: Repository, ref: str) -> str:
    """Remove one key file; refuses the last key and the key in use. Returns its name."""
    with repo.lock(exclusive=True):
        name = resolve_key(repo, ref)
        if name == repo.key_name:
            raise UsageError(f"key {name[:8]} is the one this password opened; refusing to remove it",
                             hint="open the repository with another key's password to remove it, or "
                             "use 'cbr-agent key passwd' to change this password")
        others = [n for n, _size in repo.backend.list("keys") if n != name]
        if not others:
            raise UsageError(f"key {name[:8]} is the last key of the repository; refusing to remove it")
        repo.backend.delete("keys/" + name)
        return name


def change_password(repo: Repository, password: str, kdf: KdfParams | None = None) -> tuple[str, str]:
    """Replace the key in use by one for ``password``: ``(new key name, removed key name)``."""
    if repo.key_name is None:
        raise RepositoryError("the key in use is not known; cannot change its password")
    with repo.lock(exclusive=True):
        old = repo.key_name
        new = repo.add_key(password, kdf=kdf)
        repo.key_name = new
        repo.backend.delete("keys/" + old)
        return new, old
