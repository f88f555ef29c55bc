"""Human tables and ``--json`` output, and the small wording helpers every command shares.

People see one short form of an id (:func:`short_id`, 8 hex characters as restic shows them); ``--json``
always carries the full id, and every command that takes a snapshot accepts any unique prefix.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

#: hex characters of an id shown to people (snapshots, repositories)
SHORT_ID_CHARS = 8


def short_id(full: str | None) -> str:
    """The form of a snapshot (or repository) id shown in human output."""
    return (full or "")[:SHORT_ID_CHARS]


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 file``, ``2 files``, ``0 files``; ``many`` for irregular plurals (``entry``/``entries``)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
