"""A few threads that compress and seal chunks of large files (``writer.store_claimed``), so one big file
still uses every core; the reader thread has hashed and claimed each chunk already (``writer.claim``).

Submission is bounded by bytes in flight (memory stays bounded whatever the file size). The first
error is kept and raised by :meth:`BlobPool.check` / :meth:`BlobPool.close`: repository errors stop
the backup.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cbr_agent.repository.writer import BlobSink


class BlobPool:
    def __init__(self, writer: BlobSink, *, threads: int = 2, budget: int = 16 * 1024 * 1024) -> None:
        self.writer = writer
        self.budget = budget
        self._in_flight = 0
        self._cond = threading.Condition()
        self._queue: queue.SimpleQueue[tuple[bytes, bytes] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self._threads = [threading.Thread(target=self._run, name=f"blob-{i}", daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit(self, blob_id: bytes, data: bytes) -> None:
        size = len(data)
        with self._cond:
            # a chunk larger than the budget still goes through, alone
            while self._in_flight and self._in_flight + size > self.budget and self.error is None:
                self._cond.wait(0.5)
            if self.error is not None:
                raise self.error
            self._in_flight += size
        self._queue.put((blob_id, data))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            blob_id, data = item
            try:
                if self.error is None:
                    self.writer.store_claimed(blob_id, data)
            except BaseException as exc:
                with self._cond:
                    if self.error is None:
                        self.error = exc
            finally:
                with self._cond:
                    self._in_flight -= len(data)
                    self._cond.notify_all()

    def drain(self) -> None:
        """Wait until everything submitted so far is stored; raise the first error."""
        with self._cond:
            while self._in_flight and self.error is None:
                self._cond.wait(0.5)
            if self.error is not None:
                raise self.error

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
