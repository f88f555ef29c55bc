"""Reading files that are not small: ``readers`` threads chunk them one by one (FileSaver), and the
careful path for any file (looked at again by name if it changed while being read)."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

from cbr_agent.backup.filesaver import FileProblem, FileSaver, TypeChanged
from cbr_agent.backup.runstate import BackupStats, RunState
from cbr_agent.backup.treesaver import DirTask, TreeAssembler
from cbr_agent.fs.nodes import Node, node_from_stat

READ_QUEUE = 64
#: reads of a file that keeps changing (or is briefly not a regular file) before it is given up on
READ_ATTEMPTS = 3

class FileItem(NamedTuple):
    """A file the walker found to back up, and the listing slot its node resolves."""

    task: DirTask
    slot: int             # its place in the task's listing
    path: str
    name: str             # the walker's name for it (a backup root's may differ from the path's)
    lstat: os.stat_result
    existed: bool         # in the parent snapshot: counts as changed, not new
    known: Sequence[str] = ()  # the content of the version in the parent snapshot (a changed file)


#: work other than one file that the reader threads take from the same queue (a batch of small files)
Job = Callable[[], None]


class ReaderThreads:
    """``readers`` threads taking single files (or other jobs) from a bounded queue; each resolves its
    file's slot."""

    def __init__(self, saver: FileSaver, state: RunState, trees: TreeAssembler, *, readers: int,
                 tick: Callable[[], None]) -> None:
        self.saver = saver
        self.state = state
        self.trees = trees
        self.tick = tick            # while waiting for room in the queue: stop if asked, checkpoint
        self._queue: queue.Queue[FileItem | Job | None] = queue.Queue(maxsize=READ_QUEUE)
        self._threads = [threading.Thread(target=self._loop, name=f"reader-{i}", daemon=True)
                         for i in range(max(1, readers))]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()

    def submit(self, item: FileItem | Job) -> None:
        while True:
            self.tick()
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                pass

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if not isinstance(item, FileItem):
                try:
                    if not self.state.should_stop():
                        item()
                except BaseException as exc:
                    self.state.fail(exc)
                continue
            try:
                delta = BackupStats()
                node = None if self.state.should_stop() else read_file(self.saver, self.state, delta, item)
                self.state.add(delta)
                self.trees.resolve(item.task, item.slot, node)
            except BaseException as exc:  # repository, crypto or a bug: the backup stops
                self.state.fail(exc)


def read_file(saver: FileSaver, state: RunState, delta: BackupStats, item: FileItem) -> Node | None:
    """One file of any size, None if not backed up. A file that changed while read, or whose name was
    no longer a regular file, is looked at again by name, up to :data:`READ_ATTEMPTS` times: what is
    found then is backed up (a newer version saved by rename is the usual case), with a warning only
    when no attempt read a consistent version."""
    path = item.path
    saved = None
    for attempt in range(1, READ_ATTEMPTS + 1):
        last = attempt == READ_ATTEMPTS
        try:
            saved = saver.save(path, item.known)
        except TypeChanged as problem:
            if state.should_stop():
                return None
            if last:
                state.warn(f"{path}: not backed up: {problem}")
                return None
            continue
        except FileProblem as problem:
            if state.should_stop():
                return None
            state.warn(f"{path}: not backed up: {problem}")
            return None
        if not saved.changed:
            break
        if last:
            state.warn(f"{path}: changed while being read; the backed-up copy may be inconsistent")
    assert saved is not None
    node = node_from_stat(item.name, saved.stat_before)
    node["size"] = saved.size
    node["content"] = saved.content
    if saved.xattrs:
        node["xattrs"] = saved.xattrs
    elif saved.xattr_error:
        state.warn(f"{path}: cannot read extended attributes: {saved.xattr_error}")
    if item.existed:
        delta.files_changed += 1
        delta.bytes_changed += saved.size
    else:
        delta.files_new += 1
        delta.bytes_new += saved.size
    delta.bytes_read += saved.bytes_read
    delta.bytes_total += saved.size
    delta.bytes_done += saved.size
    return node

