"""What the threads of one backup share: counters, warnings, cancellation and the first fatal error."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class BackupStats:
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    dirs: int = 0
    others: int = 0
    bytes_read: int = 0
    bytes_total: int = 0      # size of every regular file in the snapshot
    bytes_new: int = 0        # ... of the new files among them
    bytes_changed: int = 0    # ... of the changed ones (the rest is unchanged)
    bytes_done: int = 0       # size of the files handled so far (read or reused)
    dirs_scanned: int = 0     # directories looked into (listed, or only their entries the journal named)
    dirs_reused: int = 0      # subtrees taken from the parent snapshot unopened (the journal vouched)
    warnings: list[str] = field(default_factory=list)

    @property
    def files_done(self) -> int:
        return self.files_new + self.files_changed + self.files_unchanged


class RunState:
    """``lock`` guards ``stats`` and the directory slots (see :mod:`cbr_agent.backup.treesaver`)."""

    def __init__(self, cancel: threading.Event | None) -> None:
        self.cancel = cancel or threading.Event()
        self.stats = BackupStats()
        self.lock = threading.Lock()
        self.fatal: BaseException | None = None
        self.journal_roots = 0    # backup paths walked with the change hint

    def warn(self, message: str) -> None:
        # the caller reports the collected warnings (CLI, daemon); log them only for debugging
        log.debug("warning: %s", message)
        with self.lock:
            self.stats.warnings.append(message)

    def should_stop(self) -> bool:
        return self.cancel.is_set() or self.fatal is not None

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            if self.fatal is None:
                self.fatal = exc
        self.cancel.set()

    def add(self, delta: BackupStats) -> None:
        """Merge a thread's counts (one lock round trip per batch, not per file)."""
        with self.lock:
            s = self.stats
            s.files_new += delta.files_new
            s.files_changed += delta.files_changed
            s.files_unchanged += delta.files_unchanged
            s.others += delta.others
            s.bytes_read += delta.bytes_read
            s.bytes_total += delta.bytes_total
            s.bytes_new += delta.bytes_new
            s.bytes_changed += delta.bytes_changed
            s.bytes_done += delta.bytes_done
