"""Applying recorded metadata: owner, mode, extended attributes, times (in that order: chown clears
setuid bits, and every change but the last one would move mtime)."""

from __future__ import annotations

import errno
import grp
import os
import pwd
from functools import lru_cache
from typing import Any

from cbr_agent.fs.nodes import decode_xattr_value

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@lru_cache(maxsize=4096)
def _uid_of(name: str | None, fallback: int) -> int:
    if name:
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            pass
    return fallback


@lru_cache(maxsize=4096)
def _gid_of(name: str | None, fallback: int) -> int:
    if name:
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            pass
    return fallback


def owner_ids(node: dict[str, Any]) -> tuple[int, int]:
    """User and group by name where this host knows the name, else by the recorded number."""
    return (_uid_of(node.get("user"), int(node.get("uid", -1))),
            _gid_of(node.get("group"), int(node.get("gid", -1))))


def apply_fd(fd: int, node: dict[str, Any], *, created_owner: tuple[int, int] | None = None,
             created_mode: int | None = None) -> list[str]:
    """Metadata of a regular file through its descriptor; returns problems (not raised).

    ``created_owner`` / ``created_mode``: what the file got when it was created, when known; a call
    that would not change anything is skipped (restoring many small files is mostly system calls)."""
    problems: list[str] = []
    chowned = False
    if IS_ROOT:
        owner = owner_ids(node)
        if owner != created_owner:
            chowned = True
            try:
                os.fchown(fd, *owner)
            except OSError as exc:
                problems.append(f"cannot set owner: {exc.strerror}")
    mode = int(node.get("mode", 0o644))
    if chowned or mode != created_mode:  # chown clears setuid/setgid: set the mode after it
        try:
            os.fchmod(fd, mode)
        except OSError as exc:
            problems.append(f"cannot set mode: {exc.strerror}")
    problems += _xattrs(fd, node, follow=True)
    try:
        mtime = int(node["mtime_ns"])
        os.utime(fd, ns=(mtime, mtime))
    except (OSError, KeyError) as exc:
        problems.append(f"cannot set times: {exc}")
    return problems


class FileMeta:
    """What finishing one restored regular file needs, decided once when it is planned: the system calls
    that would change nothing are left out, and no node dict is kept per file (memory, time)."""

    __slots__ = ("chmod", "mode", "mtime", "owner", "xattrs")

    def __init__(self, node: dict[str, Any], *, created_owner: tuple[int, int] | None,
                 created_mode: int) -> None:
        self.mode = int(node.get("mode", 0o644))
        owner = owner_ids(node) if IS_ROOT else None
        self.owner = owner if owner != created_owner else None
        # chown clears setuid/setgid: the mode is set again after it
        self.chmod = self.owner is not None or self.mode != created_mode
        mtime = node.get("mtime_ns")
        self.mtime = None if mtime is None else int(mtime)
        self.xattrs = node.get("xattrs") or None

    def state(self) -> tuple[Any, ...]:
        """Its fields as plain values (what a restore's helper process is sent: pickled in C, no class)."""
        return (self.mode, self.mtime, self.owner, self.chmod, self.xattrs)

    @classmethod
    def from_state(cls, state: tuple[Any, ...]) -> FileMeta:
        meta = cls.__new__(cls)
        meta.mode, meta.mtime, meta.owner, meta.chmod, meta.xattrs = state
        return meta

    def apply(self, fd: int) -> list[str]:
        """Same order and problems as :func:`apply_fd`."""
        problems: list[str] = []
        if self.owner is not None:
            try:
                os.fchown(fd, *self.owner)
            except OSError as exc:
                problems.append(f"cannot set owner: {exc.strerror}")
        if self.chmod:
            try:
                os.fchmod(fd, self.mode)
            except OSError as exc:
                problems.append(f"cannot set mode: {exc.strerror}")
        if self.xattrs:
            problems += _xattrs(fd, {"xattrs": self.xattrs}, follow=True)
        if self.mtime is None:
            problems.append("cannot set times: 'mtime_ns'")
            return problems
        try:
            os.utime(fd, ns=(self.mtime, self.mtime))
        except OSError as exc:
            problems.append(f"cannot set times: {exc}")
        return problems


def apply_path(path: str, node: dict[str, Any], *, symlink: bool = False) -> list[str]:
    """Metadata of anything by path, never following a symlink; ``path`` short enough for one system
    call (:meth:`cbr_agent.fs.longpath.LongPaths.short`)."""
    problems: list[str] = []
    if IS_ROOT:
        try:
            os.chown(path, *owner_ids(node), follow_symlinks=False)
        except OSError as exc:
            problems.append(f"cannot set owner: {exc.strerror}")
    if not symlink:
        try:
            os.chmod(path, int(node.get("mode", 0o755)))
        except OSError as exc:
            problems.append(f"cannot set mode: {exc.strerror}")
    problems += _xattrs(path, node, follow=False)
    try:
        mtime = int(node["mtime_ns"])
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
    except (OSError, KeyError) as exc:
        problems.append(f"cannot set times: {exc}")
    return problems


def _xattrs(target: int | str, node: dict[str, Any], *, follow: bool) -> list[str]:
    xattrs = node.get("xattrs") or {}
    problems: list[str] = []
    for name, value in xattrs.items():
        try:
            if isinstance(target, int):
                os.setxattr(target, name, decode_xattr_value(value))
            else:
                os.setxattr(target, name, decode_xattr_value(value), follow_symlinks=follow)
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) and not IS_ROOT:
                continue
            problems.append(f"cannot set extended attribute {name}: {exc.strerror}")
    return problems
