"""MemoryBackend: the backend interface over a dict, for tests and for the conformance suite's reference.

Same contract as the directory backend: atomic puts, ranged gets, FileNotFoundError for a missing object,
idempotent deletes, ValueError for a name outside the layout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from cbr_agent.errors import RepositoryExists
from cbr_agent.repository.backend import TYPES, Buffer


def check_name(name: str) -> tuple[str, str]:
    """``(type, base)`` of a valid object name (``config`` is ``("config", "")``); ValueError otherwise."""
    if name == "config":
        return "config", ""
    type_, _, base = name.partition("/")
    if type_ not in TYPES or not base or "/" in base or base.startswith("."):
        raise ValueError(f"bad object name {name!r}")
    return type_, base


def join_buffers(data: Buffer | Sequence[Buffer]) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return b"".join(data)


def slice_range(blob: bytes, offset: int, length: int | None) -> bytes:
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("negative offset or length")
    return blob[offset:] if length is None else blob[offset : offset + length]


class MemoryBackend:
    """Objects in a dict; thread-safe. ``present=False`` models a location that does not exist yet."""

    def __init__(self, location: str = "memory:", *, present: bool = True) -> None:
        self.location = location
        self._objects: dict[str, bytes] = {}
        self._present = present
        self._lock = threading.Lock()

    def is_present(self) -> bool:
        return self._present

    def is_empty(self) -> bool:
        with self._lock:
            return not self._objects

    def create(self) -> None:
        with self._lock:
            if "config" in self._objects:
                raise RepositoryExists(f"a repository already exists at {self.location}")
            if self._objects:
                raise RepositoryExists(f"{self.location} is not empty")
            self._present = True

    def put(self, name: str, data: Buffer | Sequence[Buffer]) -> None:
        check_name(name)
        blob = join_buffers(data)
        with self._lock:
            self._objects[name] = blob
            self._present = True

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        check_name(name)
        with self._lock:
            blob = self._objects.get(name)
        if blob is None:
            raise FileNotFoundError(name)
        return slice_range(blob, offset, length)

    def list(self, type_: str) -> Iterator[tuple[str, int]]:
        if type_ not in TYPES:
            raise ValueError(f"bad object type {type_!r}")
        prefix = type_ + "/"
        with self._lock:
            items = [(n[len(prefix) :], len(b)) for n, b in self._objects.items() if n.startswith(prefix)]
        yield from sorted(items)

    def delete(self, name: str) -> None:
        check_name(name)
        with self._lock:
            self._objects.pop(name, None)

    def exists(self, name: str) -> bool:
        check_name(name)
        with self._lock:
            return name in self._objects

    def size(self, name: str) -> int:
        check_name(name)
        with self._lock:
            blob = self._objects.get(name)
        if blob is None:
            raise FileNotFoundError(name)
        return len(blob)
