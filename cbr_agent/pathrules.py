"""Backup paths and their excludes: validation, normalization and matching, in one small module.

Rules (DESIGN.md, decision 5):
- a backup path is absolute and normalized: no ``.``/``..`` segments, no repeated or trailing ``/``
  (except the root ``/`` itself);
- an exclude of a path is either an absolute path inside it (that subtree is skipped) or a glob:
  without ``/`` it matches an entry's name at any depth below the path (``*.tmp``, ``node_modules``),
  with ``/`` it matches the entry's path relative to the backup path (``build/*.o``); ``*`` and ``?``
  never cross a ``/``, ``**`` does (``**/`` also matches no directory at all); ``[abc]``, ``[a-z]``
  and ``[!abc]`` are character classes; ``*`` matches names starting with ``.`` too;
- a glob is normalized: a trailing ``/`` is dropped (``node_modules/`` means ``node_modules``), repeated
  ``/`` and ``.`` segments are collapsed, and a leading ``./`` anchors a single name to the backup path
  (``./build`` is only the ``build`` directly inside it); ``..`` segments are refused, since they can
  never match;
- a comma is rejected in both, since the API joins excludes with commas; so are NUL bytes, empty
  strings and strings that are not file names (lone surrogates other than ``os.fsdecode``'s escapes).

Names that are not valid UTF-8 arrive as ``str`` with surrogate escapes (``os.fsdecode``) and are
matched as such: a glob matches the escaped characters like any other. Matching is exact and
case-sensitive, without Unicode normalization (NFC and NFD spellings of a name are different names, as
they are on a Linux file system).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

MAX_PATH_LENGTH = 4096
_GLOB_CHARS = frozenset("*?[")


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
    try:
        size = len(value.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise PathRuleError(f"{kind} {value!r} is not a file name (it holds a lone surrogate)") from None
    if size > MAX_PATH_LENGTH:
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
    """Validate one exclude of the backup path ``root`` (already normalized); its normal form."""
    _check_text("exclude", pattern)
    if pattern.startswith("/"):
        normal = normalize_path(pattern)
        if not is_inside(normal, root) or normal == root:
            raise PathRuleError(f"exclude {pattern!r} is not inside the backup path {root!r}")
        return normal
    return normalize_glob(pattern)


def normalize_glob(pattern: str) -> str:
    """The normal form of a relative exclude (see the module docstring); PathRuleError if unusable."""
    _check_text("exclude", pattern)
    anchored = pattern.startswith("./")
    segments = [s for s in pattern.split("/") if s not in ("", ".")]
    if not segments:
        raise PathRuleError(f"exclude {pattern!r} names nothing (it would exclude the backup path "
                            "itself; remove the path instead)")
    if ".." in segments:
        raise PathRuleError(f"exclude {pattern!r} contains '..'; an exclude can only name entries "
                            "inside the backup path")
    normal = "/".join(segments)
    if anchored and len(segments) == 1:
        normal = "./" + normal
    try:
        _compile_glob(normal.removeprefix("./"))
    except re.error as exc:
        raise PathRuleError(f"exclude {pattern!r} is not a valid glob: {exc}") from None
    return normal


def is_inside(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or below it (both normalized)."""
    if root == "/":
        return path.startswith("/")
    return path == root or path.startswith(root + "/")


_CLASS_SPECIAL = re.compile(r"([\\\[\]&~|^-])")


def _translate_class(body: str) -> str:
    """A glob character class body as a regex class body that never matches '/'."""
    negate = body[:1] in ("!", "^")
    if negate:
        body = body[1:]
    out: list[str] = []
    i = 0
    while i < len(body):
        # keep ranges "a-z" as ranges; escape every other character the regex engine treats specially
        if i + 2 < len(body) and body[i + 1] == "-":
            out.append(_CLASS_SPECIAL.sub(r"\\\1", body[i]) + "-" + _CLASS_SPECIAL.sub(r"\\\1", body[i + 2]))
            i += 3
            continue
        out.append(_CLASS_SPECIAL.sub(r"\\\1", body[i]))
        i += 1
    return ("^/" if negate else "") + "".join(out)


def _compile_glob(pattern: str) -> re.Pattern[str]:
    """Translate a glob where ``*``/``?`` stay within one segment and ``**`` crosses segments."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                while pattern.startswith("*", i):  # '***' is '**'
                    i += 1
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
            # as in fnmatch: a ']' right after '[' or '[!' is a member, not the end
            start = i + 1
            if pattern.startswith(("!", "^"), start):
                start += 1
            end = pattern.find("]", start + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                out.append("[" + _translate_class(pattern[i + 1 : end]) + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """The compiled glob; an unusable one (stored by another tool) matches only itself, literally."""
    try:
        return _compile_glob(pattern)
    except re.error:
        return re.compile(re.escape(pattern) + r"\Z", re.DOTALL)


def glob_match(pattern: str, text: str) -> bool:
    """Whether the glob ``pattern`` matches all of ``text`` (a name or a relative path)."""
    return _glob_regex(pattern).match(text) is not None


class ExcludeMatcher:
    """Decides whether an entry below one backup path is excluded.

    Build one per backup path; :meth:`excluded` takes the entry's absolute path. When a directory is
    excluded the walker does not descend into it, so only the entry itself needs testing; for a path
    that arrives without its parents having been tested (a file-system event), use
    :meth:`excluded_deep`.
    """

    def __init__(self, root: str, patterns: Iterable[str]) -> None:
        self.root = root
        self._prefix_len = 1 if root == "/" else len(root) + 1
        self.subtrees: set[str] = set()
        self.name_globs: list[re.Pattern[str]] = []
        self.names: set[str] = set()
        self.relative_globs: list[re.Pattern[str]] = []
        self.relative_names: set[str] = set()
        for raw in patterns:
            if not raw:
                continue
            if raw.startswith("/"):
                self.subtrees.add(posixpath.normpath(raw))
                continue
            pattern = _lenient_glob(raw)
            if not pattern:
                continue
            if pattern.startswith("./") or "/" in pattern:
                relative = pattern.removeprefix("./")
                if _GLOB_CHARS.isdisjoint(relative):
                    self.relative_names.add(relative)
                else:
                    self.relative_globs.append(_glob_regex(relative))
            elif _GLOB_CHARS.isdisjoint(pattern):
                self.names.add(pattern)
            else:
                self.name_globs.append(_glob_regex(pattern))
        # one regex per kind: a walk calls excluded() for every entry
        self._name_re = _combined(self.name_globs)
        self._relative_re = _combined(self.relative_globs)

    def __bool__(self) -> bool:
        return bool(self.subtrees or self.name_globs or self.names or self.relative_globs
                    or self.relative_names)

    def excluded(self, path: str) -> bool:
        """Whether the entry ``path`` (absolute, below the root) is excluded by itself."""
        if path in self.subtrees:
            return True
        name = path[path.rfind("/") + 1 :]
        if name in self.names or (self._name_re is not None and self._name_re.match(name)):
            return True
        if self._relative_re is not None or self.relative_names:
            relative = path[self._prefix_len :]
            return relative in self.relative_names or (
                self._relative_re is not None and self._relative_re.match(relative) is not None)
        return False

    def excluded_deep(self, path: str) -> bool:
        """Whether ``path`` or any of its parents below the root is excluded."""
        if not is_inside(path, self.root) or path == self.root:
            return False
        current = self.root if self.root != "/" else ""
        for segment in path[self._prefix_len :].split("/"):
            current = f"{current}/{segment}"
            if self.excluded(current):
                return True
        return False


def _combined(globs: Sequence[re.Pattern[str]]) -> re.Pattern[str] | None:
    if not globs:
        return None
    if len(globs) == 1:
        return globs[0]
    return re.compile("|".join(f"(?:{g.pattern})" for g in globs), re.DOTALL)


def _lenient_glob(pattern: str) -> str:
    """Normal form of a stored glob, without raising: patterns from a control plane are used as is."""
    try:
        return normalize_glob(pattern)
    except PathRuleError:
        return pattern.strip("/")


def split_excludes(patterns: Sequence[str]) -> tuple[str, ...]:
    """Excludes as the API returns them may arrive comma-joined; give them one by one."""
    out: list[str] = []
    for item in patterns:
        out.extend(p for p in item.split(",") if p)
    return tuple(out)
