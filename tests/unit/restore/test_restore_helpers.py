"""Restore helpers: names from a tree are checked, zero blobs become holes, metadata is applied."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.errors import IntegrityError
from cbr_agent.restore.contents import HOLE_MIN, is_zeros
from cbr_agent.restore.metadata import apply_fd, apply_path
from cbr_agent.restore.restorer import check_name


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "/etc", "x\0y", None, 3])
def test_names_that_could_escape_the_target_are_refused(bad) -> None:
    with pytest.raises(IntegrityError):
        check_name(bad)


@given(st.text(min_size=1).filter(lambda s: s not in (".", "..") and "/" not in s and "\0" not in s))
def test_ordinary_names_pass(name: str) -> None:
    assert check_name(name) == name


@given(st.binary(min_size=0, max_size=9000))
def test_is_zeros(data: bytes) -> None:
    assert is_zeros(data) == (len(data) >= HOLE_MIN and data == bytes(len(data)))
    assert is_zeros(bytes(HOLE_MIN + len(data)))


def test_metadata_is_applied_in_an_order_that_sticks(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x")
    node = {"mode": 0o4751, "uid": os.getuid(), "gid": os.getgid(), "user": None, "group": None,
            "mtime_ns": 1_500_000_000_000_000_001, "xattrs": {"user.a": "AAE="}}
    fd = os.open(f, os.O_WRONLY)
    try:
        assert apply_fd(fd, node) == []
    finally:
        os.close(fd)
    st_ = os.lstat(f)
    assert stat.S_IMODE(st_.st_mode) == 0o4751 and st_.st_mtime_ns == 1_500_000_000_000_000_001
    assert os.getxattr(f, "user.a") == b"\x00\x01"
    os.symlink("f", tmp_path / "l")
    assert apply_path(str(tmp_path / "l"), {"mtime_ns": 42, "uid": os.getuid(), "gid": os.getgid()},
                      symlink=True) == []
    assert os.lstat(tmp_path / "l").st_mtime_ns == 42
    assert os.lstat(f).st_mtime_ns == 1_500_000_000_000_000_001  # the target is untouched
