"""A quick count of what a backup will see, in a thread of its own beside the backup (as restic's
scanner): regular files and their sizes under each path, with the same excludes and file-system
boundary, so a progress line can show a total, a percentage and an ETA on a first backup too.

Only started when someone shows progress (a terminal); it reads directory listings and lstat results
the kernel has just cached for the walk, or caches them for it. It is an estimate: files that change
meanwhile, long paths and unreadable directories are not chased.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Sequence

from cbr_agent.backup.listing import join
from cbr_agent.fs.longpath import is_long
from cbr_agent.pathrules import ExcludeMatcher


class Prescan:
    def __init__(self, roots: Sequence[tuple[str, ExcludeMatcher]], *, one_file_system: bool) -> None:
        self.roots = list(roots)
        self.one_file_system = one_file_system
        self.files = 0
        self.bytes = 0
        self.done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="prescan", daemon=True)

    def start(self) -> None:
        """Count in a thread of its own."""
        self._thread.start()

    def stop(self) -> None:
        """Stop counting (the backup is over) and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def run(self) -> None:
        """Count in the calling thread; ``done`` is set when every root was counted."""
        try:
            for root, matcher in self.roots:
                if self._stop.is_set():
                    return
                self._scan_root(root, matcher)
            self.done = True
        except Exception:  # an estimate only: never let it disturb the backup
            return

    def _scan_root(self, root: str, matcher: ExcludeMatcher) -> None:
        try:
            st = os.lstat(root)
        except OSError:
            return
        if stat.S_ISREG(st.st_mode):
            self.files += 1
            self.bytes += st.st_size
            return
        if not stat.S_ISDIR(st.st_mode):
            return
        root_dev = st.st_dev
        seen = {(st.st_dev, st.st_ino)}  # a bind mount of a parent must not loop
        stack = [root]
        excluding = bool(matcher)
        while stack and not self._stop.is_set():
            path = stack.pop()
            if is_long(path):
                continue  # too long for one system call: not worth the walker's long-path machinery
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        child = join(path, entry.name)
                        if excluding and matcher.excluded(child):
                            continue
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                est = entry.stat(follow_symlinks=False)
                                ident = (est.st_dev, est.st_ino)
                                if (self.one_file_system and est.st_dev != root_dev) or ident in seen:
                                    continue
                                seen.add(ident)
                                stack.append(child)
                            elif entry.is_file(follow_symlinks=False):
                                size = entry.stat(follow_symlinks=False).st_size
                                self.files += 1
                                self.bytes += size
                        except OSError:
                            continue
            except OSError:
                continue
