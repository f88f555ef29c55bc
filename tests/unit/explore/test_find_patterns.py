"""find patterns: the exclude grammar, checked against ExcludeMatcher over large input spaces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cbr_agent.explore.find import compile_pattern
from cbr_agent.pathrules import ExcludeMatcher, PathRuleError

names = st.text(st.sampled_from("ab.x-_ é"), min_size=1, max_size=5).filter(lambda n: n not in (".", ".."))
globs = st.lists(st.one_of(names, st.sampled_from(["*", "?", "**", "*.x", "a*", "[ab]", "[!a]*"])),
                 min_size=1, max_size=4).map("/".join)
roots = st.sampled_from(["/", "/r", "/r/s"])


@settings(max_examples=300, deadline=None)
@given(root=roots, glob=globs, rel=st.lists(names, min_size=1, max_size=4))
def test_relative_and_name_patterns_match_as_excludes_do(root: str, glob: str, rel: list[str]) -> None:
    """A pattern of find selects exactly the entries an exclude of the backup path would."""
    try:
        pattern = compile_pattern(glob)
    except PathRuleError:
        return
    path = ("" if root == "/" else root) + "/" + "/".join(rel)
    excluded = ExcludeMatcher(root, [glob]).excluded(path)
    assert pattern.matches(path, rel[-1], [root]) == excluded


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(names, min_size=1, max_size=4), other=st.lists(names, min_size=1, max_size=4))
def test_an_absolute_literal_matches_only_its_own_path(parts: list[str], other: list[str]) -> None:
    path = "/" + "/".join(parts)
    pattern = compile_pattern(path)
    assert pattern.kind == "absolute" and pattern.matches(path, parts[-1], [])
    other_path = "/" + "/".join(other)
    assert pattern.matches(other_path, other[-1], []) == (other_path == path)


def test_pattern_kinds_and_examples() -> None:
    assert compile_pattern("*.conf").kind == "name"
    assert compile_pattern("/etc//x/").glob == "/etc/x"
    assert compile_pattern("./build").kind == "relative"
    p = compile_pattern("/etc/**/*.conf")
    assert p.matches("/etc/a/b/c.conf", "c.conf", []) and p.matches("/etc/c.conf", "c.conf", [])
    assert not p.matches("/etc2/c.conf", "c.conf", [])
    rel = compile_pattern(".ssh/*")
    assert rel.matches("/home/u/.ssh/id", "id", ["/home/u"]) and not rel.matches(
        "/home/u/x/.ssh/id", "id", ["/home/u"])
    assert compile_pattern("a,b").matches("/r/a,b", "a,b", ["/r"])  # commas are fine in find


@pytest.mark.parametrize("bad", ["", "a/../b", "/x/../y"])
def test_unusable_patterns_are_refused(bad: str) -> None:
    with pytest.raises(PathRuleError):
        compile_pattern(bad)
