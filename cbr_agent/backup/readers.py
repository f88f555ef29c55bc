"""Reading files that are not small: ``readers`` threads chunk them one by one (FileSaver), and the
careful path for any file (read again once if it changed while being read)."""

from __future__ import annotations

import os
import queue
import stat
import threading
from collections.abc import Callable

from cbr_agent.backup.dirtree import DirTask, TreeAssembler
from cbr_agent.backup.filesaver import FileProblem, FileSaver, describe
from cbr_agent.backup.longpath import short
from cbr_agent.backup.nodes import Node, node_from_stat
from cbr_agent.backup.runstate import BackupStats, RunState

READ_QUEUE = 64

#: (task, slot index, path, name, lstat, existed before)
FileItem = tuple[DirTask, int, str, str, os.stat_result, bool]


class ReaderThreads:
    """``readers`` threads taking single files from a bounded queue; each resolves its file's slot."""

    def __init__(self, saver: FileSaver, state: RunState, trees: TreeAssembler, *, readers: int,
                 tick: Callable[[], None]) -> None:
        self.saver = saver
        self.state = state
        self.trees = trees
        self.tick = tick            # while waiting for room in the queue: stop if asked, checkpoint
        self._queue: queue.Queue[FileItem | None] = queue.Queue(maxsize=READ_QUEUE)
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

    def submit(self, item: FileItem) -> None:
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
            try:
                delta = BackupStats()
                node = None if self.state.should_stop() else read_file(self.saver, self.state, delta, item)
                self.state.add(delta)
                self.trees.resolve(item[0], item[1], node)
            except BaseException as exc:  # repository, crypto or a bug: the backup stops
                self.state.fail(exc)


def read_file(saver: FileSaver, state: RunState, delta: BackupStats, item: FileItem) -> Node | None:
    """One file of any size, read again once if it changed while being read; None if not backed up."""
    _task, _index, path, name, st, existed = item
    saved = None
    for attempt in (1, 2):
        try:
            saved = saver.save(path, st)
        except FileProblem as problem:
            if state.should_stop():
                return None
            state.warn(f"{path}: not backed up: {problem}")
            return None
        if not saved.changed:
            break
        if attempt == 1:
            try:
                st = os.lstat(short(path))
            except OSError as exc:
                state.warn(f"{path}: not backed up: {describe(exc)}")
                return None
            if not stat.S_ISREG(st.st_mode):
                state.warn(f"{path}: not backed up: changed type during backup")
                return None
        else:
            state.warn(f"{path}: changed while being read; the backed-up copy may be inconsistent")
    assert saved is not None
    node = node_from_stat(name, saved.stat_before)
    node["size"] = saved.size
    node["content"] = saved.content
    if saved.xattrs:
        node["xattrs"] = saved.xattrs
    elif saved.xattr_error:
        state.warn(f"{path}: cannot read extended attributes: {saved.xattr_error}")
    if existed:
        delta.files_changed += 1
    else:
        delta.files_new += 1
    delta.bytes_read += saved.bytes_read
    delta.bytes_total += saved.size
    delta.bytes_done += saved.size
    return node

