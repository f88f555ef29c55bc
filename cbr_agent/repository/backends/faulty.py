"""FaultyBackend: a wrapper that injects faults into another backend (kopia's FaultyStorage is the model).

A :class:`Fault` names a method and which of its calls to hit (the ``nth`` matching call, for ``times``
calls, or every call from then on with ``times=0``); it may delay the call, raise an error, or (for
``put``) cut the write short: only the first ``cut`` bytes reach the inner backend before the error,
which is what a storage that loses atomicity under a failure leaves behind. Tests use it; so can a user
who wants to see how the agent copes (it is never selected by a URL).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cbr_agent.errors import RepositoryError
from cbr_agent.repository.backend import Backend, Buffer
from cbr_agent.repository.backends.memory import join_buffers

METHODS = ("put", "get", "list", "delete", "exists", "size", "create", "is_present", "is_empty")


@dataclass
class Fault:
    method: str
    nth: int = 1  # the first matching call (1-based, counted from when the fault was added) it hits
    times: int = 1  # how many matching calls from the nth on (0 = all of them)
    error: BaseException | None = field(default_factory=lambda: RepositoryError("injected fault"))
    delay: float = 0.0  # seconds to wait before the call (with or without an error)
    cut: int | None = None  # put only: store only this many bytes of the object, then raise ``error``
    prefix: str = ""  # only objects (or, for list, types) whose name starts with this
    seen: int = 0  # matching calls so far
    hits: int = 0  # calls it acted on

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown backend method {self.method!r}")
        if self.nth < 1 or self.times < 0:
            raise ValueError("nth must be >= 1 and times >= 0")

    def _applies(self, method: str, name: str) -> bool:
        if method != self.method or not name.startswith(self.prefix):
            return False
        self.seen += 1
        if self.seen < self.nth or (self.times and self.seen >= self.nth + self.times):
            return False
        self.hits += 1
        return True


class FaultyBackend:
    """Wraps ``inner``; faults are checked in the order they were added, the first that applies acts."""

    def __init__(self, inner: Backend, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.inner = inner
        self.location = inner.location
        self.faults: list[Fault] = []
        self.calls: dict[str, int] = dict.fromkeys(METHODS, 0)
        self._sleep = sleep
        self._mutex = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._mutex:
            self.faults.append(fault)
        return fault

    def fail(self, method: str, **kwargs: object) -> Fault:
        return self.add(Fault(method, **kwargs))  # type: ignore[arg-type]

    def clear(self) -> None:
        with self._mutex:
            self.faults.clear()

    def _fault(self, method: str, name: str = "") -> Fault | None:
        with self._mutex:
            self.calls[method] += 1
            for fault in self.faults:
                if fault._applies(method, name):
                    break
            else:
                return None
        if fault.delay:
            self._sleep(fault.delay)
        return fault

    @staticmethod
    def _raise(fault: Fault | None) -> None:
        if fault is not None and fault.error is not None:
            raise fault.error

    def put(self, name: str, data: Buffer | Sequence[Buffer]) -> None:
        fault = self._fault("put", name)
        if fault is not None and fault.cut is not None:
            self.inner.put(name, join_buffers(data)[: fault.cut])
            raise fault.error or RepositoryError(f"write of {name} was cut short")
        self._raise(fault)
        self.inner.put(name, data)

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self._raise(self._fault("get", name))
        return self.inner.get(name, offset, length)

    def list(self, type_: str) -> Iterator[tuple[str, int]]:
        self._raise(self._fault("list", type_))
        return self.inner.list(type_)

    def delete(self, name: str) -> None:
        self._raise(self._fault("delete", name))
        self.inner.delete(name)

    def exists(self, name: str) -> bool:
        self._raise(self._fault("exists", name))
        return self.inner.exists(name)

    def size(self, name: str) -> int:
        self._raise(self._fault("size", name))
        return self.inner.size(name)

    def create(self) -> None:
        self._raise(self._fault("create"))
        self.inner.create()

    def is_present(self) -> bool:
        self._raise(self._fault("is_present"))
        return self.inner.is_present()

    def is_empty(self) -> bool:
        self._raise(self._fault("is_empty"))
        return self.inner.is_empty()

    def open_spool(self) -> None:
        return None  # packs go through put: a fault injected into put must apply to packs too

    def __getattr__(self, attr: str) -> object:  # upload_parallelism, remove_stale_temp_files, ...
        return getattr(self.inner, attr)
