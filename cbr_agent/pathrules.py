"""Backup paths and their excludes: validation, normalization and matching, in one small module.

Rules (DESIGN.md, decision 5):
- a backup path is absolute and normalized: no ``.``/``..`` segments, no repeated or trailing ``/``
  (except the root ``/`` itself);
- an exclude of a path is either an absolute path inside it (that subtree is skipped) or a glob:
  without ``/`` it matches an entry's name at any depth below the path (``*.tmp``, ``node_modules``),
  with ``/`` it matches the entry's path relative to the backup path (``build/*.o``); ``*`` and ``?``
  never cross a ``/``, ``**`` does;
- a comma is rejected in both, since the API joins excludes with commas; so are NUL bytes and empty
  strings.

Names that are not valid UTF-8 arrive as ``str`` with surrogate escapes (``os.fsdecode``) and are
matched as such.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

MAX_PATH_LENGTH = 4096


class PathRuleError(ValueError):
    """A path or exclude breaks the rules; the message names it and says why."""


def _check_text(kind: str, value: object) -> str:
    if not isinstance(value, str):
        raise PathRuleError(f"{kind} must be a string, got {type(value).__name__}")
    if value == "":
        raise PathRuleError(f"{kind} must not be empty")
    if "\x00" in value:
        raise PathRuleError(f"{kind} {value!r} contains a NUL byte")
    if "," in value:
        raise PathRuleError(f"{kind} {value!r} contains a comma, which the CBR API cannot represent")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_PATH_LENGTH:
        raise PathRuleError(f"{kind} is longer than {MAX_PATH_LENGTH} bytes")
    return value


def normalize_path(path: str) -> str:
    """Validate an absolute backup path and return its normal form; PathRuleError otherwise."""
    _check_text("path", path)
    if not path.startswith("/"):
        raise PathRuleError(f"path {path!r} is not absolute")
    normal = posixpath.normpath(path)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal


def normalize_exclude(root: str, pattern: str) -> str:
    """Validate one exclude of the backup path ``root`` (already normalized)."""
    _check_text("exclude", pattern)
    if pattern.startswith("/"):
        normal = normalize_path(pattern)
        if not is_inside(normal, root) or normal == root:
            raise PathRuleError(f"exclude {pattern!r} is not inside the backup path {root!r}")
        return normal
    return pattern


def is_inside(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or below it (both normalized)."""
    if root == "/":
        return path.startswith("/")
    return path == root or path.startswith(root + "/")


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a glob where ``*``/``?`` stay within one segment and ``**`` crosses segments."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):  # "**/" also matches zero directories
                    out.append("(?:.*/)?")
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern.startswith(("[!", "[^"), i) else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith(("!", "^")):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


class ExcludeMatcher:
    """Decides whether an entry below one backup path is excluded.

    Build one per backup path; :meth:`excluded` takes the entry's absolute path. When a directory is
    excluded the walker does not descend into it, so only the entry itself needs testing.
    """

    def __init__(self, root: str, patterns: Iterable[str]) -> None:
        self.root = root
        self._prefix_len = 1 if root == "/" else len(root) + 1
        self.subtrees: set[str] = set()
        self.name_globs: list[re.Pattern[str]] = []
        self.names: set[str] = set()
        self.relative_globs: list[re.Pattern[str]] = []
        for pattern in patterns:
            if pattern.startswith("/"):
                self.subtrees.add(posixpath.normpath(pattern))
            elif "/" in pattern:
                self.relative_globs.append(_glob_regex(pattern.strip("/")))
            elif not any(ch in pattern for ch in "*?["):
                self.names.add(pattern)
            else:
                self.name_globs.append(_glob_regex(pattern))

    def __bool__(self) -> bool:
        return bool(self.subtrees or self.name_globs or self.names or self.relative_globs)

    def excluded(self, path: str) -> bool:
        if path in self.subtrees:
            return True
        name = path.rsplit("/", 1)[-1]
        if name in self.names or any(g.match(name) for g in self.name_globs):
            return True
        if self.relative_globs:
            relative = path[self._prefix_len :]
            return any(g.match(relative) for g in self.relative_globs)
        return False


def split_excludes(patterns: Sequence[str]) -> tuple[str, ...]:
    """Excludes as the API returns them may arrive comma-joined; give them one by one."""
    out: list[str] = []
    for item in patterns:
        out.extend(p for p in item.split(",") if p)
    return tuple(out)
