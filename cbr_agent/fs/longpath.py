"""Paths longer than the kernel takes in one system call (PATH_MAX, 4096 bytes).

Such a path is turned into ``/proc/self/fd/<fd of its parent directory>/<name>``: the kernel follows the
magic link to the already-open directory, so every path-based call (open, lstat, readlink, xattrs, mkdir,
rename, ...) works on it, and ``name`` itself is never followed where the call says so. The directory
descriptors are opened component by component (``openat`` without following links) and cached; short
paths, by far the usual case, are returned unchanged at the cost of one length test.
"""

from __future__ import annotations

import contextlib
import os
import threading

#: below this many bytes a path is passed as it is
SAFE_BYTES = 3800
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)

_lock = threading.Lock()
_fds: dict[str, int] = {}


def short(path: str) -> str:
    """``path``, or an equivalent short form when it is too long for one system call."""
    if len(path) < SAFE_BYTES // 4 or len(os.fsencode(path)) < SAFE_BYTES:
        return path
    parent, _, name = path.rpartition("/")
    return f"/proc/self/fd/{_dir_fd(parent)}/{name}"


def _dir_fd(path: str) -> int:
    with _lock:
        fd = _fds.get(path)
    if fd is not None:
        return fd
    if len(os.fsencode(path)) < SAFE_BYTES:
        fd = os.open(path, _DIR_FLAGS)
    else:
        parent, _, name = path.rpartition("/")
        fd = os.open(name, _DIR_FLAGS, dir_fd=_dir_fd(parent))
    with _lock:
        old = _fds.setdefault(path, fd)
    if old != fd:
        os.close(fd)
    return old


def _close_all_locked() -> None:
    # only here, between runs: a descriptor closed while another thread still used its
    # /proc path could be reused for another directory
    for fd in _fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _fds.clear()


def close_all() -> None:
    """Close the cached directory descriptors (at the end of a backup or restore)."""
    with _lock:
        _close_all_locked()
