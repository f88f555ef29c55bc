"""Storage backends: where repository objects live.

The interface is deliberately small (put, get with range, list, delete, exists) so an object-storage
backend fits it. Object names are ``<type>/<name>`` with type one of :data:`TYPES` or the single name
``config``. Every put is atomic: a reader sees the whole object or nothing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from cbr_agent.errors import RepositoryError, UnsupportedLocation

TYPES = ("data", "index", "snapshots", "keys", "locks")
Buffer = bytes | bytearray | memoryview


class Backend(Protocol):
    """Storage for named, immutable objects."""

    location: str

    def put(self, name: str, data: Buffer | Sequence[Buffer]) -> None:
        """Store ``data`` (or the concatenation of the buffers) under ``name``, atomically and durably."""

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Bytes of the object, or the range ``[offset, offset+length)``; FileNotFoundError if absent."""

    def list(self, type_: str) -> Iterator[tuple[str, int]]:
        """``(name, size)`` of every object of a type; ``name`` without the type prefix."""

    def delete(self, name: str) -> None:
        """Remove an object; no error if it is already gone."""

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def create(self) -> None:
        """Prepare an empty location for a new repository (RepositoryExists when not empty)."""

    def is_present(self) -> bool:
        """Whether the location exists at all."""

    def is_empty(self) -> bool:
        """Whether the location holds nothing at all (to tell "no repository" from "something else")."""


class Spool(Protocol):
    """An object being written piece by piece (a pack), so it need not be held in memory whole."""

    def write(self, bufs: Sequence[Buffer]) -> None: ...

    def commit(self, name: str) -> None:
        """Store what was written under ``name``, atomically and durably, as :meth:`Backend.put` does."""

    def discard(self) -> None: ...


@runtime_checkable
class SpoolingBackend(Protocol):
    """A backend that can store an object written piece by piece (a local directory: straight into a
    temp file beside its final place). ``open_spool`` returns None where writes must go through ``put``
    (a wrapper that limits or injects faults into puts)."""

    def open_spool(self) -> Spool | None: ...


def path_from_url(url: str) -> Path:
    """A plain path or ``file:///abs/path``."""
    if url.startswith("file:"):
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise RepositoryError(f"repository URL {url!r}: only local file:/// URLs are supported")
        return Path(unquote(parsed.path))
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise UnsupportedLocation(f"repository URL scheme {scheme!r} is not supported")
    if not url:
        raise RepositoryError("repository location is empty", hint="set 'repository' in the configuration")
    return Path(url).expanduser()


def open_backend(url: str) -> Backend:
    """The backend a URL names, with default options (:func:`cbr_agent.repository.backends.open_backend`)."""
    from cbr_agent.repository.backends import open_backend as open_with_options

    return open_with_options(url)


def _os_error(exc: OSError, action: str, path: Path | str) -> RepositoryError:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return RepositoryError(
            f"repository disk is full while {action} {path}",
            hint="free space on the repository disk, then run the backup again (nothing was lost)",
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return RepositoryError(f"permission denied while {action} {path}", hint="check the owner and mode")
    if exc.errno == errno.EROFS:
        return RepositoryError(f"repository is on a read-only file system ({action} {path})")
    return RepositoryError(f"repository I/O error while {action} {path}: {exc.strerror or exc}")


class DirectoryBackend:
    """A directory on a local disk or a NAS mount.

    Layout: ``config``, ``keys/``, ``locks/``, ``snapshots/``, ``index/``, ``data/<2 hex>/<pack id>``.
    Writes go to a temp file in the target directory, are fsynced, renamed into place, and the directory
    is fsynced, so a crash leaves either the old state or the whole new object.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    # -- naming
    def _path(self, name: str) -> Path:
        if name == "config":
            return self.root / "config"
        type_, _, base = name.partition("/")
        if type_ not in TYPES or not base or "/" in base or base.startswith("."):
            raise ValueError(f"bad object name {name!r}")
        if type_ == "data":
            return self.root / "data" / base[:2] / base
        return self.root / type_ / base

    # -- lifecycle
    def is_present(self) -> bool:
        return self.root.is_dir()

    def is_empty(self) -> bool:
        try:
            return not any(self.root.iterdir())
        except FileNotFoundError:
            return True
        except OSError as exc:
            raise _os_error(exc, "listing", self.root) from None

    def create(self) -> None:
        from cbr_agent.errors import RepositoryExists

        try:
            if self.root.exists():
                if not self.root.is_dir():
                    raise RepositoryExists(f"{self.root} exists and is not a directory")
                if (self.root / "config").exists():
                    raise RepositoryExists(f"a repository already exists at {self.root}")
                if any(self.root.iterdir()) and not self._is_unfinished_init():
                    raise RepositoryExists(f"{self.root} is not empty")
            self.root.mkdir(parents=True, exist_ok=True)
            for type_ in TYPES:
                (self.root / type_).mkdir(exist_ok=True)
            for i in range(256):
                (self.root / "data" / f"{i:02x}").mkdir(exist_ok=True)
            _fsync_dir(self.root)
        except OSError as exc:
            raise _os_error(exc, "creating", self.root) from None

    def _is_unfinished_init(self) -> bool:
        """True (after clearing its key and lock files) for what an init killed before writing ``config``
        leaves: only our directories, and no data, index or snapshot objects in them."""
        if any(entry.name not in TYPES for entry in self.root.iterdir()):
            return False
        if any(True for t in ("data", "index", "snapshots") for _ in self.list(t)):
            return False
        for t in ("keys", "locks"):
            for name, _size in list(self.list(t)):
                self.delete(f"{t}/{name}")
        return True

    # -- objects
    def put(self, name: str, data: Buffer | Sequence[Buffer]) -> None:
        path = self._path(name)
        tmp = path.parent / f".tmp-{secrets.token_hex(8)}"
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                bufs = [data] if isinstance(data, (bytes, bytearray, memoryview)) else list(data)
                _write_all(fd, bufs)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _os_error(exc, "writing", path) from None

    def open_spool(self) -> Spool:
        """A temp file in ``data/`` (same file system as the packs: committing is a rename; a crash
        leaves a ``.tmp-`` file that :meth:`remove_stale_temp_files` clears)."""
        return _FileSpool(self, self.root / "data")

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        path = self._path(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _os_error(exc, "reading", path) from None
        try:
            if length is None:
                length = os.fstat(fd).st_size - offset
            data = os.pread(fd, length, offset)
            if len(data) < length:  # pread may return short on some file systems; finish the range
                parts = [data]
                got = len(data)
                while got < length:
                    more = os.pread(fd, length - got, offset + got)
                    if not more:
                        break
                    parts.append(more)
                    got += len(more)
                data = b"".join(parts)
            return data
        except OSError as exc:
            raise _os_error(exc, "reading", path) from None
        finally:
            os.close(fd)

    def list(self, type_: str) -> Iterator[tuple[str, int]]:
        if type_ not in TYPES:
            raise ValueError(f"bad object type {type_!r}")
        top = self.root / type_
        if type_ == "data":
            dirs = sorted(Path(e.path) for e in _scandir(top) if e.is_dir(follow_symlinks=False))
        else:
            dirs = [top]
        for d in dirs:
            for entry in _scandir(d):
                if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                    continue
                try:
                    yield entry.name, entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue

    def delete(self, name: str) -> None:
        path = self._path(name)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _os_error(exc, "deleting", path) from None
        with contextlib.suppress(OSError):
            _fsync_dir(path.parent)

    def exists(self, name: str) -> bool:
        return self._path(name).exists()

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size

    def remove_stale_temp_files(self, older_than: float) -> int:
        """Delete temp files left by crashed writers (best effort); returns how many."""
        import time

        removed = 0
        cutoff = time.time() - older_than
        for d in [self.root / t for t in TYPES] + [self.root / "data" / f"{i:02x}" for i in range(256)]:
            for entry in _scandir(d):
                if entry.name.startswith(".tmp-"):
                    try:
                        if entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
                            removed += 1
                    except OSError:
                        pass
        return removed


class _FileSpool:
    """A pack written into a temp file as it fills, then fsynced and renamed into place."""

    def __init__(self, backend: DirectoryBackend, where: Path) -> None:
        self._backend = backend
        self._tmp = where / f".tmp-{secrets.token_hex(8)}"
        try:
            self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _os_error(exc, "writing", self._tmp) from None

    def write(self, bufs: Sequence[Buffer]) -> None:
        try:
            _write_all(self._fd, list(bufs))  # a copy: a partial write replaces an item
        except OSError as exc:
            self.discard()
            raise _os_error(exc, "writing", self._tmp) from None

    def commit(self, name: str) -> None:
        path = self._backend._path(name)
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            try:
                os.rename(self._tmp, path)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.rename(self._tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            self.discard()
            raise _os_error(exc, "writing", path) from None

    def discard(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _os_error(exc, "listing", path) from None


_IOV_MAX = 1024


def _write_all(fd: int, bufs: list[Buffer]) -> None:
    """Write every buffer in order: writev of up to IOV_MAX buffers per call (packs of tiny blobs hold
    tens of thousands of pieces), finishing partial writes."""
    i = 0
    total = len(bufs)
    while i < total:
        batch = bufs[i : i + _IOV_MAX]
        n = os.writev(fd, batch)
        for buf in batch:
            size = len(buf)
            if n >= size:
                n -= size
                i += 1
                continue
            bufs[i] = memoryview(buf)[n:]  # partial write: resume inside this buffer
            break


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
