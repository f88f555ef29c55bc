"""The progress line of long commands: one line on stderr, rewritten in place a few times a second.

Shown only when stderr is a terminal and the command does not print ``--json`` (never in a pipe, a log
file or a journal). The engine only counts (:class:`cbr_agent.progress.Progress`, or the backup's
``ProgressInfo`` callback); this module renders. No dependency: a carriage return and padding.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from cbr_agent.cli.output import human_bytes, plural
from cbr_agent.progress import refresh_seconds


def wanted(args: argparse.Namespace) -> bool:
    """Whether this run shows a progress line: stderr is a terminal and no --json."""
    return not getattr(args, "json", False) and sys.stderr.isatty()


class StatusLine:
    """One line of a terminal, rewritten in place; :meth:`clear` leaves the terminal as it was."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.width = 0
        self._lock = threading.Lock()

    def show(self, text: str) -> None:
        columns = shutil.get_terminal_size((80, 24)).columns - 1
        text = text[:columns]
        with self._lock:
            self.stream.write("\r" + text + " " * max(0, self.width - len(text)))
            self.stream.flush()
            self.width = len(text)

    def clear(self) -> None:
        with self._lock:
            if self.width:
                self.stream.write("\r" + " " * self.width + "\r")
                self.stream.flush()
                self.width = 0


class _ClearBeforeLog(logging.Filter):
    """Log lines go to stderr too: clear the progress line first so a record starts on a clean line
    (the next refresh draws the line again below it)."""

    def __init__(self, line: StatusLine) -> None:
        super().__init__()
        self.line = line

    def filter(self, record: logging.LogRecord) -> bool:
        self.line.clear()
        return True


@contextlib.contextmanager
def showing(line: StatusLine) -> Iterator[StatusLine]:
    """While the block runs, log records clear ``line`` before they are written; at the end it is
    cleared."""
    handlers = list(logging.getLogger().handlers)
    guard = _ClearBeforeLog(line)
    for handler in handlers:
        handler.addFilter(guard)
    try:
        yield line
    finally:
        for handler in handlers:
            handler.removeFilter(guard)
        line.clear()


@contextlib.contextmanager
def polling(render: Callable[[float], str], *, enabled: bool) -> Iterator[None]:
    """Show ``render(elapsed_seconds)`` at once and every refresh_seconds() while the block runs (when
    ``enabled``), and its final state once before the line is cleared."""
    if not enabled:
        yield
        return
    line = StatusLine()
    stop = threading.Event()
    started = time.monotonic()
    interval = refresh_seconds()

    def show() -> None:
        with contextlib.suppress(Exception):  # a display problem never stops the work
            line.show(render(time.monotonic() - started))

    def refresh() -> None:
        show()
        while not stop.wait(interval):
            show()

    thread = threading.Thread(target=refresh, name="progress-line", daemon=True)
    with showing(line):
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            show()


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _eta(done: float, total: float | None, elapsed: float) -> str:
    if not total or done <= 0 or done >= total or elapsed <= 0:
        return ""
    return f", ETA {clock((total - done) / (done / elapsed))}"


def describe(progress: Any, elapsed: float) -> str:
    """``[0:00:12] restoring: 40% 120/300 files, 1.2 MiB/3.0 MiB, ETA 0:00:18`` from a Progress."""
    p = progress
    if not p.phase and not p.items_done:
        return f"[{clock(elapsed)}] starting"
    parts = [f"[{clock(elapsed)}] {p.phase}:" if p.phase else f"[{clock(elapsed)}]"]
    if p.bytes_total:
        parts.append(f"{min(100.0, 100.0 * p.bytes_done / p.bytes_total):.1f}%")
    elif p.items_total:
        parts.append(f"{min(100.0, 100.0 * p.items_done / p.items_total):.1f}%")
    items = f"{p.items_done}/{p.items_total}" if p.items_total is not None else f"{p.items_done}"
    text = " ".join(parts) + f" {items} {p.unit}".rstrip()
    if p.bytes_total is not None:
        text += f", {human_bytes(p.bytes_done)}/{human_bytes(p.bytes_total)}"
        return text + _eta(p.bytes_done, p.bytes_total, elapsed)
    if p.bytes_done:
        text += f", {human_bytes(p.bytes_done)}"
    return text + _eta(p.items_done, p.items_total, elapsed)


class BackupLine:
    """The backup's ``progress`` callback: files and bytes done, and the total, percentage and ETA from
    the pre-scan beside it (while it still counts: what it has found so far)."""

    def __init__(self, line: StatusLine | None = None) -> None:
        self.line = line or StatusLine()

    def __call__(self, info: Any) -> None:
        self.line.show(backup_text(info))
        if info.finished:
            self.line.clear()


def backup_text(info: Any) -> str:
    rate = info.bytes_done / info.elapsed if info.elapsed > 0 else 0.0
    head = f"[{clock(info.elapsed)}]"
    if info.scan_done:
        total = info.scanned_bytes
        pct = min(100.0, 100.0 * info.bytes_done / total) if total else 100.0
        return (f"{head} {pct:.1f}% {info.files}/{plural(info.scanned_files, 'file')}, "
                f"{human_bytes(info.bytes_done)}/{human_bytes(total)}, {human_bytes(rate)}/s"
                + _eta(info.bytes_done, total, info.elapsed))
    text = (f"{head} {plural(info.files, 'file')}, {human_bytes(info.bytes_done)}, "
            f"{human_bytes(rate)}/s; counting: {plural(info.scanned_files, 'file')}, "
            f"{human_bytes(info.scanned_bytes)} so far")
    return text + _eta(info.bytes_done, info.bytes_expected, info.elapsed)
