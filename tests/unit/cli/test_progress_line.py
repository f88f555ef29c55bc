"""The progress line's rendering and its manners on a terminal: padding over a longer previous line,
clearing, and getting out of the way of log lines (issue 9, item 14)."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

from cbr_agent.cli.progress import StatusLine, backup_text, clock, describe, showing
from cbr_agent.progress import Progress


def test_describe_with_totals_has_percentage_and_eta() -> None:
    p = Progress()
    p.start("restoring", "files", items_total=10, bytes_total=4096)
    p.items_done, p.bytes_done = 5, 1024
    assert describe(p, 2.0) == "[0:00:02] restoring: 25.0% 5/10 files, 1.0 KiB/4.0 KiB, ETA 0:00:06"
    p.bytes_done = 4096
    assert "ETA" not in describe(p, 3.0) and "100.0%" in describe(p, 3.0)


def test_describe_without_totals_counts_only() -> None:
    p = Progress(phase="reading snapshots", unit="snapshots")
    p.items_done = 3
    assert describe(p, 0.0) == "[0:00:00] reading snapshots: 3 snapshots"


def test_backup_text_while_counting_and_once_counted() -> None:
    info = SimpleNamespace(files=10, bytes_done=10 * 1024 * 1024, elapsed=2.0, bytes_expected=None,
                           scanned_files=50, scanned_bytes=40 * 1024 * 1024, scan_done=False)
    counting = backup_text(info)
    assert counting.startswith("[0:00:02] 10 files, 10.0 MiB, 5.0 MiB/s; counting: 50 files")
    assert "%" not in counting and "ETA" not in counting
    info.scan_done = True
    done = backup_text(info)
    assert done == "[0:00:02] 25.0% 10/50 files, 10.0 MiB/40.0 MiB, 5.0 MiB/s, ETA 0:00:06"
    assert clock(3725) == "1:02:05"


def test_status_line_pads_over_a_longer_line_and_clears() -> None:
    stream = io.StringIO()
    line = StatusLine(stream)
    line.show("a long first state")
    line.show("short")
    line.clear()
    assert stream.getvalue() == ("\ra long first state" + "\rshort" + " " * 13
                                 + "\r" + " " * 5 + "\r")


def test_a_log_line_clears_the_progress_line_first() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        line = StatusLine(stream)
        with showing(line):
            line.show("[0:00:01] 50.0%")
            logging.getLogger("cbr_agent.test").warning("something happened")
        logging.getLogger("cbr_agent.test").warning("after")
    finally:
        root.removeHandler(handler)
    out = stream.getvalue()
    assert out.startswith("\r[0:00:01] 50.0%\r" + " " * 15 + "\rsomething happened\n")
    assert out.endswith("after\n") and not handler.filters
