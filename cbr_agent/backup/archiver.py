"""The backup pipeline: walk, change detection, threaded reading, trees built bottom-up.

Threads::

    walker (caller's thread)  sorted scandir + lstat, excludes, one-file-system, change detection
                              (walker.py); small files in batches (smallfiles.py): read right there,
                              or by helper processes when there are many (helperprocs.py)
        | larger files, one by one, bounded queue
    reader threads            open (O_NOATIME, O_NOFOLLOW), chunk, writer.save (hash, dedup gate,
                              compress, seal, pack: repository/writer.py)   (readers.py, filesaver.py)
        | chunks of large files (hashed and claimed), bounded by bytes in flight
    blob pool threads         writer.store_claimed (compress + seal) so one big file uses every core
                              (sealthreads.py)

A directory's tree is built as soon as all its entries are resolved, by whichever thread resolved the
last one; its node then resolves a slot in the parent's listing (treesaver.py). Memory is bounded by the
queues, the byte budgets and the directories still waiting for files.

A directory whose listing fingerprint (names and stat fields of every entry, listing.py) equals the one
in the files cache reuses its cached nodes without comparing files one by one; when its subdirectories'
trees are unchanged too, even its tree blob id is reused without encoding anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cbr_agent.backup.changehint import ChangeHint
from cbr_agent.backup.filesaver import FileSaver
from cbr_agent.backup.filescache import FilesCache
from cbr_agent.backup.keptlistings import KeptListings
from cbr_agent.backup.listing import join, listing_fingerprint
from cbr_agent.backup.previous import RACY_NS
from cbr_agent.backup.readers import FileItem, ReaderThreads
from cbr_agent.backup.runstate import BackupStats, RunState
from cbr_agent.backup.sealthreads import BlobPool
from cbr_agent.backup.smallfiles import SmallFiles
from cbr_agent.backup.treesaver import DirTask, TreeAssembler
from cbr_agent.backup.walker import Root, Walker
from cbr_agent.errors import Cancelled
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.repository.writer import BlobSink

__all__ = ["RACY_NS", "Archiver", "ArchiverOptions", "BackupStats", "DirTask", "Root", "join",
           "listing_fingerprint"]


#: files cache rows wait in memory for a checkpoint (a writer flush must come first): the 200,000-file
#: tree's 1 %-changed re-run held 19 MB of them at its end; with a checkpoint every 8 MiB of them it
#: peaked 10 MB lower (139 against 149 MB), no slower
CHECKPOINT_ROWS = 8 * 1024 * 1024


@dataclass(slots=True)
class ArchiverOptions:
    """How one backup run walks and reads (everything but the repository and the writer)."""

    cache: FilesCache | None
    parent_tree: str | None
    parent_time_ns: int
    one_file_system: bool
    cancel: threading.Event | None = None
    readers: int = 2
    blob_threads: int = 2
    helpers: int = 0
    checkpoint: Callable[[], None] | None = None
    checkpoint_interval: float = 60.0
    #: a checkpoint comes early once the files cache rows waiting for one hold this many bytes
    checkpoint_rows: int = CHECKPOINT_ROWS
    #: what the daemon's file change journal saw change (None: walk everything)
    hint: ChangeHint | None = None
    #: the daemon's listings of directories that journal-led backups edited, kept between backups
    listings: KeptListings | None = None


class Archiver:
    """Backs up a set of roots into one tree; :meth:`run` returns the root tree id.

    ``Archiver(repo, writer, options)``; the options' fields as keywords are accepted too."""

    def __init__(self, repo: Any, writer: BlobSink, options: ArchiverOptions | None = None,
                 **fields: Any) -> None:
        if options is None:
            options = ArchiverOptions(**fields)
        elif fields:
            raise TypeError("Archiver takes options or their fields as keywords, not both")
        self.options = options
        self.parent_tree = options.parent_tree
        self.parent_time_ns = options.parent_time_ns
        self._state = RunState(options.cancel)
        self.cancel = self._state.cancel
        self.stats: BackupStats = self._state.stats
        self._pool = BlobPool(writer, threads=options.blob_threads)
        #: this run's long-path descriptors, closed when the run ends (never another run's)
        self._longpaths = LongPaths()
        saver = FileSaver(repo, writer, self._pool, should_stop=self._state.should_stop,
                          longpaths=self._longpaths)
        self._trees = TreeAssembler(repo, writer, options.cache, self._state, options.listings)
        self._readers = ReaderThreads(saver, self._state, self._trees, readers=options.readers,
                                      tick=self._tick)
        self._small = SmallFiles(writer, saver, self._state, self._trees, tick=self._tick,
                                 helpers=options.helpers, offload=self._readers.submit)
        self._walker = Walker(repo, options.cache, self._state, self._trees,
                              one_file_system=options.one_file_system, queue_file=self._queue_file,
                              tick=self._tick, longpaths=self._longpaths, hint=options.hint,
                              listings=options.listings)
        self._checkpoint = options.checkpoint
        self._checkpoint_interval = options.checkpoint_interval
        self._last_checkpoint = time.monotonic()

    def run(self, roots: Sequence[Root]) -> str:
        if self.options.listings is not None:
            self.options.listings.begin()
        self._readers.start()
        try:
            self._last_checkpoint = time.monotonic()
            self._walker.walk_all(roots, self.parent_tree, self.parent_time_ns)
            self._small.flush()
            while not self._trees.done.wait(0.2):
                self._tick()
            self._raise_if_stopped()
            self._pool.drain()
        finally:
            self._small.close()
            self._readers.stop()
            self._pool.close()
            self._longpaths.close()
        if self._state.fatal is not None:
            raise self._state.fatal
        assert self._trees.root_tree is not None
        return self._trees.root_tree

    def _queue_file(self, item: FileItem, size: int) -> None:
        if size <= self._small.limit:
            self._small.add(item, size)
        else:
            self._readers.submit(item)

    @property
    def journal_roots(self) -> int:
        """Backup paths walked with the change hint (the rest were walked fully)."""
        return self._state.journal_roots

    def warn(self, message: str) -> None:
        self._state.warn(message)

    def _raise_if_stopped(self) -> None:
        if self._state.fatal is not None:
            raise self._state.fatal
        if self._pool.error is not None:
            raise self._pool.error
        if self.cancel.is_set():
            raise Cancelled("backup cancelled; no snapshot was written")

    def _tick(self) -> None:
        """Called by the walker once per directory and while anyone waits: stop if asked, checkpoint."""
        self._raise_if_stopped()
        if self._checkpoint is None:
            return
        now = time.monotonic()
        cache = self.options.cache
        if now - self._last_checkpoint >= self._checkpoint_interval or \
                (cache is not None and cache.staged_bytes >= self.options.checkpoint_rows):
            self._last_checkpoint = now
            self._checkpoint()
