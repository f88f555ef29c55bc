"""The FUSE side of ``mount``: :class:`SnapshotFS` bound to mfusepy (fusepy's maintained fork, libfuse 3)
or fusepy (libfuse 2), whichever is installed (the optional ``mount`` extra). Read-only: every call that
would change something fails with EROFS."""

from __future__ import annotations

import errno
import itertools
import os
import threading
from types import ModuleType
from typing import Any

from cbr_agent.explore.snapfs import SnapshotFS


def fuse_module() -> ModuleType | None:
    """The FUSE binding, or None when neither is installed (or libfuse is missing)."""
    for name in ("mfusepy", "fuse"):
        try:
            module = __import__(name)
        except (ImportError, OSError):
            continue
        if hasattr(module, "FUSE") and hasattr(module, "Operations"):
            return module
    return None


def operations(fuse: ModuleType, fs: SnapshotFS) -> Any:
    """An Operations object of the binding that serves ``fs``."""

    def wrap(call: Any) -> Any:
        try:
            return call()
        except OSError as exc:
            raise fuse.FuseOSError(exc.errno or errno.EIO) from None

    class Ops(fuse.Operations):  # type: ignore[misc, name-defined]
        use_ns = True  # times in nanoseconds, as the snapshot records them

        def __init__(self) -> None:
            self._handles: dict[int, Any] = {}
            self._next = itertools.count(1)
            self._lock = threading.Lock()

        def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
            return wrap(lambda: fs.getattr(path))  # type: ignore[no-any-return]

        def readdir(self, path: str, fh: Any) -> list[str]:
            return [".", "..", *wrap(lambda: fs.readdir(path))]

        def readlink(self, path: str) -> str:
            return wrap(lambda: fs.readlink(path))  # type: ignore[no-any-return]

        def listxattr(self, path: str) -> list[str]:
            return wrap(lambda: fs.listxattr(path))  # type: ignore[no-any-return]

        def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
            return wrap(lambda: fs.getxattr(path, name))  # type: ignore[no-any-return]

        def open(self, path: str, flags: int) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
                raise fuse.FuseOSError(errno.EROFS)
            node = wrap(lambda: fs.file_node(path))
            with self._lock:
                fh = next(self._next)
                self._handles[fh] = node
            return fh

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            node = self._handles.get(fh)
            if node is None:
                node = wrap(lambda: fs.file_node(path))
            return wrap(lambda: fs.read(node, size, offset))  # type: ignore[no-any-return]

        def release(self, path: str, fh: int) -> int:
            with self._lock:
                self._handles.pop(fh, None)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": 0, "f_bfree": 0, "f_bavail": 0,
                    "f_namemax": 255}

    for name in ("chmod", "chown", "create", "link", "mkdir", "mknod", "removexattr", "rename", "rmdir",
                 "setxattr", "symlink", "truncate", "unlink", "utimens", "write"):
        setattr(Ops, name, _read_only(fuse))
    return Ops()


def _read_only(fuse: ModuleType) -> Any:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise fuse.FuseOSError(errno.EROFS)

    return refuse


def serve(fuse: ModuleType, fs: SnapshotFS, mountpoint: str, *, allow_other: bool = False) -> None:
    """Mount and serve until unmounted (``fusermount3 -u``) or interrupted (SIGINT/SIGTERM)."""
    options: dict[str, Any] = {"foreground": True, "ro": True, "fsname": "cbr-agent",
                               "subtype": "cbr-agent", "default_permissions": True}
    if allow_other:
        options["allow_other"] = True
    try:
        fuse.FUSE(operations(fuse, fs), mountpoint, **options)
    except RuntimeError as exc:
        # libfuse 3 reports a loop ended by SIGINT/SIGTERM as error 8, after unmounting cleanly
        if exc.args == (8,) and not os.path.ismount(mountpoint):
            return
        raise
