"""Path and exclude rules (DESIGN decision 5): examples for each rule, properties over large input spaces."""

from __future__ import annotations

import fnmatch
import os
import posixpath

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cbr_agent.pathrules import (
    ExcludeMatcher,
    PathRuleError,
    glob_match,
    is_inside,
    normalize_exclude,
    normalize_glob,
    normalize_path,
    split_excludes,
)

# names as a Linux file system can hold them: any character but '/' and NUL, including spaces,
# unicode and the surrogate escapes os.fsdecode makes of bytes that are not UTF-8
_raw_names = st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b)
fs_names = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"),
            min_size=1, max_size=12),
    _raw_names.map(os.fsdecode),
).filter(lambda n: n not in (".", "..") and "," not in n)
literal_names = fs_names.filter(lambda n: not set(n) & set("*?["))
segments_lists = st.lists(fs_names, min_size=1, max_size=6)


def join(parts: list[str]) -> str:
    return "/" + "/".join(parts)


# -- normalize_path ---------------------------------------------------------------------------


@pytest.mark.parametrize(("given_path", "normal"), [
    ("/", "/"), ("//", "/"), ("///etc//", "/etc"), ("/opt/workspace/", "/opt/workspace"),
    ("/a/./b/../c", "/a/c"), ("/..", "/"), ("/my documents/ünïcode", "/my documents/ünïcode"),
])
def test_normalize_path_examples(given_path: str, normal: str) -> None:
    assert normalize_path(given_path) == normal


@pytest.mark.parametrize(("bad", "reason"), [
    ("", "empty"), ("etc", "not absolute"), ("/a,b", "comma"), ("/a\x00b", "NUL"),
    ("/" + "x" * 5000, "longer"), ("/bad\ud800name", "surrogate"), (None, "string"),
])
def test_normalize_path_refuses(bad: object, reason: str) -> None:
    with pytest.raises(PathRuleError, match=reason):
        normalize_path(bad)  # type: ignore[arg-type]


@given(segments_lists, st.lists(st.sampled_from(["", ".", "//"]), max_size=6))
def test_normalize_path_removes_noise_and_is_idempotent(parts: list[str], noise: list[str]) -> None:
    noisy_parts: list[str] = []
    for i, part in enumerate(parts):
        if i < len(noise):
            noisy_parts.append(noise[i])
        noisy_parts.append(part)
    noisy = "/" + "/".join(noisy_parts) + "/"
    normal = normalize_path(noisy)
    assert normal == join(parts)
    assert normalize_path(normal) == normal
    assert not normal.endswith("/") and "//" not in normal


@given(st.text(max_size=30))
def test_normalize_path_result_is_clean_or_refused(text: str) -> None:
    try:
        normal = normalize_path(text)
    except PathRuleError:
        return
    assert normal.startswith("/")
    assert normal == "/" or not normal.endswith("/")
    assert not {".", ".."} & set(normal.split("/"))
    assert posixpath.normpath(normal) == normal


# -- excludes: normalization ----------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "normal"), [
    ("*.tmp", "*.tmp"), ("node_modules/", "node_modules"), ("build//*.o", "build/*.o"),
    ("./build", "./build"), ("./a/b", "a/b"), ("a/./b/", "a/b"), ("/data/cache/", "/data/cache"),
    ("with space", "with space"),
])
def test_normalize_exclude_examples(pattern: str, normal: str) -> None:
    assert normalize_exclude("/data", pattern) == normal


@pytest.mark.parametrize(("pattern", "reason"), [
    ("/etc/passwd", "not inside"), ("/data", "not inside"), ("/database", "not inside"),
    ("a,b", "comma"), ("../x", r"'\.\.'"), ("a/../b", r"'\.\.'"), (".", "names nothing"),
    ("./", "names nothing"), ("[z-a]", "not a valid glob"), ("", "empty"),
])
def test_normalize_exclude_refuses(pattern: str, reason: str) -> None:
    with pytest.raises(PathRuleError, match=reason):
        normalize_exclude("/data", pattern)


@given(st.text(st.sampled_from("ab*?[]!/. -"), min_size=1, max_size=12))
def test_normalize_glob_is_idempotent_and_usable(pattern: str) -> None:
    try:
        normal = normalize_glob(pattern)
    except PathRuleError:
        return
    assert normalize_glob(normal) == normal
    assert ".." not in normal.split("/") and not normal.endswith("/")
    ExcludeMatcher("/r", [normal]).excluded("/r/x")  # compiles and runs


# -- excludes: matching -----------------------------------------------------------------------


@given(segments_lists, literal_names)
def test_a_name_without_slash_matches_at_any_depth(parts: list[str], name: str) -> None:
    matcher = ExcludeMatcher("/root", [name])
    assert matcher.excluded("/root" + join([*parts, name]))
    assume(parts[-1] != name)
    assert not matcher.excluded("/root" + join(parts))


@given(segments_lists)
def test_an_absolute_exclude_skips_that_subtree_only(parts: list[str]) -> None:
    root = "/srv/data"
    target = root + join(parts)
    matcher = ExcludeMatcher(root, [target])
    assert matcher.excluded(target)
    assert matcher.excluded_deep(target + "/below/it")
    assert not matcher.excluded(target + "-sibling")
    assert not matcher.excluded_deep(root + join([*parts[:-1], parts[-1] + "x"]))


@given(segments_lists, literal_names)
def test_a_glob_with_slash_is_relative_to_the_backup_path(parts: list[str], name: str) -> None:
    matcher = ExcludeMatcher("/root", ["top/*"])
    assert matcher.excluded(f"/root/top/{name}")
    assert not matcher.excluded(f"/root/top/{name}/deeper")  # '*' never crosses '/'
    assert not matcher.excluded("/root" + join([*parts, "top", name]))  # anchored at the root


@given(segments_lists, literal_names)
def test_double_star_crosses_directories_and_matches_none(parts: list[str], name: str) -> None:
    matcher = ExcludeMatcher("/", [f"**/{name}"])
    assert matcher.excluded("/" + name)
    assert matcher.excluded(join([*parts, name]))


_glob_alphabet = st.sampled_from(list("ab.*?[]! \u00e9"))


@settings(max_examples=400)
@given(st.text(_glob_alphabet, min_size=1, max_size=8), st.text(st.sampled_from(list("ab.[]! \u00e9")),
                                                                  min_size=1, max_size=8))
def test_name_globs_agree_with_fnmatch(pattern: str, name: str) -> None:
    """Within one name (no '/'), a glob means what the shell's fnmatch means."""
    assert glob_match(pattern, name) == fnmatch.fnmatchcase(name, pattern)


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("*.tmp", "report.tmp", True), ("*.tmp", "report.tmp.bak", False), ("*", ".hidden", True),
    ("[a-c]?.log", "b1.log", True), ("[a-c]?.log", "d1.log", False), ("[!a]x", "bx", True),
    ("[!a]x", "ax", False), ("[]]x", "]x", True), ("[", "[", True), ("cache dir", "cache dir", True),
    ("* *", "two words", True), ("*.txt", "ÿ.txt", True), ("日本*", "日本語", True),
    ("[^a]x", "bx", True), ("a&&b", "a&&b", True), ("[a&&b]", "&", True), ("x[\\]y", "x\\y", True),
])
def test_glob_examples(pattern: str, name: str, matches: bool) -> None:
    assert glob_match(pattern, name) is matches


def test_names_that_are_not_utf8_match_as_surrogate_escapes() -> None:
    bad = os.fsdecode(b"caf\xe9 menu.tmp")  # latin-1 bytes, not UTF-8
    assert ExcludeMatcher("/data", ["*.tmp"]).excluded("/data/x/" + bad)
    assert ExcludeMatcher("/data", [bad]).excluded("/data/" + bad)
    assert not ExcludeMatcher("/data", [bad]).excluded("/data/" + "café menu.tmp")
    assert ExcludeMatcher("/data", [os.fsdecode(b"caf?")]).excluded("/data/" + os.fsdecode(b"caf\xe9"))
    assert normalize_exclude("/data", bad) == bad


def test_unicode_spellings_are_distinct_names() -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    matcher = ExcludeMatcher("/d", [nfc])
    assert matcher.excluded(f"/d/{nfc}") and not matcher.excluded(f"/d/{nfd}")


def test_anchored_name_matches_only_directly_inside() -> None:
    matcher = ExcludeMatcher("/proj", ["./build"])
    assert matcher.excluded("/proj/build")
    assert not matcher.excluded("/proj/sub/build")
    assert ExcludeMatcher("/proj", ["build"]).excluded("/proj/sub/build")


def test_trailing_slash_pattern_from_the_api_still_matches_names() -> None:
    assert ExcludeMatcher("/p", ["node_modules/"]).excluded("/p/a/node_modules")


def test_root_slash_as_backup_path() -> None:
    matcher = ExcludeMatcher("/", ["/proc", "tmp/*", "*.swp"])
    assert matcher.excluded("/proc") and matcher.excluded_deep("/proc/1/status")
    assert matcher.excluded("/tmp/x") and not matcher.excluded("/var/tmp/x")
    assert matcher.excluded("/home/u/.notes.swp")


def test_an_unusable_stored_pattern_matches_only_itself() -> None:
    matcher = ExcludeMatcher("/d", ["[z-a]"])
    assert matcher.excluded("/d/[z-a]") and not matcher.excluded("/d/m")


def test_empty_matcher_is_false_and_excludes_nothing() -> None:
    matcher = ExcludeMatcher("/d", [])
    assert not matcher and not matcher.excluded("/d/anything")


@given(st.lists(st.sampled_from(["*.o", "b", "a/b", "/r/a", "**/c", "./a"]), max_size=4),
       st.lists(st.sampled_from(["a", "b", "c", "x.o"]), min_size=1, max_size=5))
def test_excluded_deep_is_excluded_on_any_prefix(patterns: list[str], parts: list[str]) -> None:
    matcher = ExcludeMatcher("/r", patterns)
    path = "/r" + join(parts)
    prefixes = ["/r" + join(parts[: i + 1]) for i in range(len(parts))]
    assert matcher.excluded_deep(path) == any(matcher.excluded(p) for p in prefixes)


def test_is_inside() -> None:
    assert is_inside("/a/b", "/a") and is_inside("/a", "/a") and is_inside("/x", "/")
    assert not is_inside("/ab", "/a") and not is_inside("/", "/a")


def test_split_excludes() -> None:
    assert split_excludes(["*.txt,/opt/lib/test", "", "a"]) == ("*.txt", "/opt/lib/test", "a")


@given(st.lists(st.text(st.sampled_from(list("ab*?[]!/.")), min_size=1, max_size=6), max_size=5),
       st.lists(st.sampled_from(["a", "b", "ab", ".a", "[a]", "b!"]), min_size=1, max_size=4))
def test_many_patterns_exclude_what_any_one_of_them_excludes(patterns: list[str], parts: list[str]) -> None:
    usable = []
    for pattern in patterns:
        try:
            usable.append(normalize_exclude("/r", pattern))
        except PathRuleError:
            continue
    path = "/r" + join(parts)
    together = ExcludeMatcher("/r", usable).excluded(path)
    assert together == any(ExcludeMatcher("/r", [p]).excluded(path) for p in usable)
