"""Directory listings: sorted names with their lstat, through a descriptor of the directory."""

from __future__ import annotations

import os
from pathlib import Path

from cbr_agent.backup.listing import list_dir
from cbr_agent.fs.longpath import LongPaths
from cbr_agent.pathrules import ExcludeMatcher


def _list(path: Path, excludes: tuple[str, ...] = ()) -> tuple[list, list[str]]:
    warnings: list[str] = []
    with LongPaths() as longpaths:
        entries = list_dir(str(path), ExcludeMatcher(str(path), list(excludes)), warnings.append, longpaths)
    return entries, warnings


def test_entries_are_sorted_with_their_own_lstat(tmp_path: Path) -> None:
    for name in ("b", "a", "c.log"):
        (tmp_path / name).write_bytes(name.encode())
    os.symlink("a", tmp_path / "link")
    (tmp_path / "sub").mkdir()
    entries, warnings = _list(tmp_path)
    assert warnings == [] and [name for name, _st in entries] == ["a", "b", "c.log", "link", "sub"]
    for name, st in entries:  # lstat of the entry itself: the symlink is a symlink
        own = os.lstat(tmp_path / name)
        assert (st.st_ino, st.st_mode) == (own.st_ino, own.st_mode)
    entries, _ = _list(tmp_path, ("*.log",))
    assert [name for name, _st in entries] == ["a", "b", "link", "sub"]


def test_a_directory_replaced_by_a_symlink_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere", tmp_path / "dir")  # was a directory when its parent was listed
    entries, warnings = _list(tmp_path / "dir")
    assert entries == [] and len(warnings) == 1
    assert warnings[0].startswith(f"{tmp_path / 'dir'}: cannot list directory")


def test_an_unreadable_directory_is_a_warning(tmp_path: Path) -> None:
    entries, warnings = _list(tmp_path / "missing")
    assert entries == []
    assert warnings == [f"{tmp_path / 'missing'}: cannot list directory: vanished during backup"]
