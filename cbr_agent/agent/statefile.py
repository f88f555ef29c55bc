"""Small JSON files in the state dir, written atomically (temp file, fsync, rename, fsync of the dir).

A reader never sees half a file; a file that is nevertheless damaged (a disk error, a hand edit) reads as
:class:`CorruptStateFile`, which callers recover from (the control plane holds the truth) instead of
crashing. Write failures (read-only or full state dir) become :class:`~cbr_agent.errors.StateError`
naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cbr_agent.errors import StateError


class CorruptStateFile(Exception):
    """The file exists but is not the JSON object expected."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"state file {path} is damaged ({reason})")
        self.path = path


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
    except OSError as exc:
        raise StateError(f"cannot create state directory {path}: {exc.strerror}",
                         hint="choose a writable --state-dir or fix its permissions") from None
    return path


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix."""
    ensure_dir(path.parent)
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
        tmp_name = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror or exc}",
                         hint="the state directory must be writable and not full") from None
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: Path, value: dict[str, Any], *, mode: int = 0o644) -> None:
    data = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, data.encode("utf-8", "surrogateescape"), mode=mode)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when absent; CorruptStateFile when damaged."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise CorruptStateFile(path, "it is a directory") from None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}",
                         hint="check the permissions of the state directory") from None
    try:
        value = json.loads(raw.decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        raise CorruptStateFile(path, f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CorruptStateFile(path, "not a JSON object")
    return value


def set_aside(path: Path) -> Path | None:
    """Keep a damaged file for inspection as ``<name>.corrupt`` (replacing an older one)."""
    target = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, target)
    except OSError:
        return None
    return target
