"""LongPaths: short forms of paths longer than PATH_MAX, with descriptors owned by one object each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cbr_agent.fs.longpath import SAFE_BYTES, LongPaths, is_long

PATH_MAX = os.pathconf("/", "PC_PATH_MAX")


def _deep_dir(base: Path, total: int) -> str:
    """A directory below ``base`` whose path is at least ``total`` bytes, made one level at a time (mkdir
    of the whole path would fail with ENAMETOOLONG, which is the point)."""
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    path = str(base)
    name = "d" * 200
    try:
        while len(os.fsencode(path)) < total:
            os.mkdir(name, dir_fd=fd)
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
            path += "/" + name
    finally:
        os.close(fd)
    return path


def _open_fds() -> set[int]:
    """The descriptors open in this process, as /proc/self/fd shows them (less the one listing it)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:  # the listing's own descriptor, closed by now
            continue
        except OSError:  # open, to a directory too deep for readlink's buffer
            pass
        found.add(int(name))
    return found


def test_short_paths_are_returned_as_they_are_and_open_nothing(tmp_path: Path) -> None:
    before = _open_fds()
    with LongPaths() as lp:
        assert lp.short(str(tmp_path / "f")) == str(tmp_path / "f")
        assert lp.open_fds == []
    assert _open_fds() == before
    assert not is_long(str(tmp_path)) and is_long("/" + "x" * SAFE_BYTES)


def test_paths_longer_than_path_max_work(tmp_path: Path) -> None:
    deep = _deep_dir(tmp_path, PATH_MAX + 500)
    target = deep + "/file"
    with pytest.raises(OSError):  # ENAMETOOLONG: what LongPaths is for
        os.lstat(target)
    with LongPaths() as lp:
        short = lp.short(target)
        assert len(os.fsencode(short)) < 200 and short.startswith("/proc/self/fd/")
        with open(short, "xb") as fh:
            fh.write(b"far down")
        assert os.lstat(lp.short(target)).st_size == 8
        os.symlink("file", lp.short(deep + "/link"))
        assert os.readlink(lp.short(deep + "/link")) == "file"
        assert lp.short(target) == short  # the parent's descriptor is reused, not opened again
    with LongPaths() as again, open(again.short(target), "rb") as fh:  # a fresh object opens its own
        assert fh.read() == b"far down"


def test_close_closes_its_descriptors(tmp_path: Path) -> None:
    deep = _deep_dir(tmp_path, PATH_MAX + 10)
    before = _open_fds()
    lp = LongPaths()
    lp.short(deep + "/a")
    held = set(lp.open_fds)
    assert held and held <= _open_fds() - before
    lp.close()
    assert lp.open_fds == [] and not held & _open_fds()
    assert _open_fds() == before
    lp.short(deep + "/a")  # still usable after close: opens again
    assert lp.open_fds
    lp.close()


def test_two_objects_share_no_descriptor_and_do_not_close_each_others(tmp_path: Path) -> None:
    deep = _deep_dir(tmp_path, PATH_MAX + 10)
    with LongPaths() as first:
        with LongPaths() as second:
            a, b = first.short(deep + "/f"), second.short(deep + "/f")
            assert a != b and not set(first.open_fds) & set(second.open_fds)
            seconds = set(second.open_fds)
        # the second one is closed (its descriptors are gone); the first one's still work
        assert not seconds & _open_fds()
        assert set(first.open_fds) <= _open_fds()
        with open(a, "wb") as fh:
            fh.write(b"x")
        assert os.lstat(a).st_size == 1
