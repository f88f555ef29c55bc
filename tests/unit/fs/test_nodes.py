"""Nodes from lstat (fields, hard links, xattrs, special files) and the change rule."""

from __future__ import annotations

import os
from pathlib import Path

from cbr_agent.fs.nodes import node_from_stat, read_xattrs, same_file


def test_node_fields(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    os.chmod(f, 0o2750)
    os.setxattr(f, "user.k", b"\xff")
    node = node_from_stat("f", os.lstat(f))
    assert node["type"] == "file" and node["mode"] == 0o2750 and node["size"] == 3
    assert "links" not in node and "dev" not in node
    os.link(f, tmp_path / "g")
    linked = node_from_stat("f", os.lstat(f))
    assert linked["links"] == 2 and linked["dev"] == os.lstat(f).st_dev
    assert read_xattrs(str(f)) == {"user.k": "/w=="}
    os.symlink("f", tmp_path / "l")
    assert read_xattrs(str(tmp_path / "l")) == {}  # the link itself, not its target
    os.mkfifo(tmp_path / "p")
    assert node_from_stat("p", os.lstat(tmp_path / "p"))["type"] == "fifo"


def test_same_file_rule(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    node = node_from_stat("f", os.lstat(f))
    assert same_file(node, os.lstat(f))
    os.chmod(f, 0o600)  # ctime moves
    assert not same_file(node, os.lstat(f))
