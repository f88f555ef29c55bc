"""Paths longer than the kernel takes in one system call (PATH_MAX, 4096 bytes).

Such a path is turned into ``/proc/self/fd/<fd of its parent directory>/<name>``: the kernel follows the
magic link to the already-open directory, so every path-based call (open, lstat, readlink, xattrs, mkdir,
rename, ...) works on it, and ``name`` itself is never followed where the call says so. The directory
descriptors are opened component by component (``openat`` without following links) and kept by a
:class:`LongPaths` object, one per backup run, restore, verification or helper process: closing one never
closes a descriptor that another run still names in a ``/proc`` path. Short paths, by far the usual case,
are returned unchanged at the cost of one length test.
"""

from __future__ import annotations

import contextlib
import os
import threading
from types import TracebackType

#: below this many bytes a path is passed as it is
SAFE_BYTES = 3800
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def is_long(path: str) -> bool:
    """Whether ``path`` is too long to be passed to one system call as it is."""
    return len(path) * 4 >= SAFE_BYTES and len(os.fsencode(path)) >= SAFE_BYTES


class LongPaths:
    """The directory descriptors behind the short forms of long paths, for one run; thread-safe.

    Close it (or use it as a context manager) only when no thread uses a path it returned any more: a
    closed descriptor number may be reused for another directory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: dict[str, int] = {}

    def short(self, path: str) -> str:
        """``path``, or an equivalent short form when it is too long for one system call."""
        if not is_long(path):
            return path
        parent, _, name = path.rpartition("/")
        return f"/proc/self/fd/{self._dir_fd(parent)}/{name}"

    def _dir_fd(self, path: str) -> int:
        with self._lock:
            fd = self._fds.get(path)
        if fd is not None:
            return fd
        if len(os.fsencode(path)) < SAFE_BYTES:
            fd = os.open(path, _DIR_FLAGS)
        else:
            parent, _, name = path.rpartition("/")
            fd = os.open(name, _DIR_FLAGS, dir_fd=self._dir_fd(parent))
        with self._lock:
            old = self._fds.setdefault(path, fd)
        if old != fd:  # another thread opened it meanwhile
            os.close(fd)
        return old

    @property
    def open_fds(self) -> list[int]:
        """The descriptors held now (for tests and diagnostics)."""
        with self._lock:
            return list(self._fds.values())

    def close(self) -> None:
        """Close the descriptors held; the object stays usable (it opens them again when needed)."""
        with self._lock:
            fds = list(self._fds.values())
            self._fds.clear()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> LongPaths:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
