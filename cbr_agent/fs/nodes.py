"""Tree nodes from ``lstat`` results: what the engine records of each file-system entry.

A node is a plain dict (the repository's ``encode_tree`` stores it as given). Keys written here:

- ``name`` (str; names that are not valid UTF-8 stay surrogate-escaped), ``type``: ``dir``, ``file``,
  ``symlink``, ``fifo``, ``chardev``, ``blockdev`` or ``socket``;
- ``mode`` (permission bits incl. setuid/setgid/sticky), ``uid``, ``gid``, ``user``, ``group``;
- ``mtime_ns``, ``ctime_ns``, ``inode``, ``size``; ``dev`` and ``links`` for hard-linked non-directories;
- ``target`` (symlinks), ``rdev`` (device nodes), ``xattrs`` ({name: base64 value}, only when any);
- ``content`` (files: hex blob ids, in order), ``subtree`` (directories: hex id of the tree blob).
"""

from __future__ import annotations

import base64
import errno
import grp
import os
import pwd
import stat
from functools import lru_cache
from typing import Any

Node = dict[str, Any]

TYPE_BY_FMT = {
    stat.S_IFDIR: "dir",
    stat.S_IFREG: "file",
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFCHR: "chardev",
    stat.S_IFBLK: "blockdev",
    stat.S_IFSOCK: "socket",
}

# errors that only mean "this file system or entry has no xattrs"
_NO_XATTR = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.EPERM, errno.EACCES}


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


@lru_cache(maxsize=4096)
def group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def read_xattrs(path: str | int) -> dict[str, str]:
    """Extended attributes of ``path`` itself (never a symlink's target) or of an open descriptor,
    values base64."""
    if not hasattr(os, "listxattr"):
        return {}
    follow = isinstance(path, int)  # a descriptor is the file itself already
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in _NO_XATTR:
            return {}
        raise
    if not names:  # the usual case: no call, no allocation
        return {}
    out: dict[str, str] = {}
    for name in sorted(names):
        try:
            value = os.getxattr(path, name, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno in _NO_XATTR:
                continue
            raise
        out[name] = base64.b64encode(value).decode("ascii")
    return out


def node_from_stat(name: str, st: os.stat_result) -> Node:
    """The metadata part of a node (no content, target, xattrs or subtree yet)."""
    kind = TYPE_BY_FMT.get(stat.S_IFMT(st.st_mode), "unknown")
    node: Node = {
        "name": name,
        "type": kind,
        "mode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "user": user_name(st.st_uid),
        "group": group_name(st.st_gid),
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "size": st.st_size if kind == "file" else 0,
    }
    if st.st_nlink > 1 and kind != "dir":  # hard links: restored as links by (dev, inode)
        node["dev"] = st.st_dev
        node["links"] = st.st_nlink
    if kind in ("chardev", "blockdev"):
        node["rdev"] = st.st_rdev
    return node


def same_file(node: Node, st: os.stat_result) -> bool:
    """The change-detection rule: size, mtime_ns, ctime_ns and inode all unchanged."""
    size = st.st_size if stat.S_ISREG(st.st_mode) else 0
    return (
        node.get("size") == size
        and node.get("mtime_ns") == st.st_mtime_ns
        and node.get("ctime_ns") == st.st_ctime_ns
        and node.get("inode") == st.st_ino
    )


def decode_xattr_value(value: str) -> bytes:
    return base64.b64decode(value)
