"""Console parts that need no server: session expiry, the sign-in redirect target, relative times, and
the API's ``search`` parameter (validated like every other field)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.controlplane.console.sessions import ABSOLUTE_SECONDS, IDLE_SECONDS, MAX_SESSIONS, SessionStore
from cbr_agent.controlplane.console.views import ago, local_next
from cbr_agent.controlplane.validation import parse_list_query
from cbr_agent.errors import ApiError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_when_idle_and_after_the_absolute_limit() -> None:
    clock = Clock()
    store = SessionStore(clock)
    session = store.create("tok", "proj")
    assert session.csrf and session.id != session.csrf and "tok" not in session.id
    clock.now += IDLE_SECONDS - 1
    assert store.get(session.id) is session
    clock.now += IDLE_SECONDS + 1
    assert store.get(session.id) is None
    busy = store.create("tok", "proj")
    for _ in range(ABSOLUTE_SECONDS // (IDLE_SECONDS // 2) + 1):
        clock.now += IDLE_SECONDS // 2
        found = store.get(busy.id)
    assert found is None  # kept busy, still ended after ABSOLUTE_SECONDS
    assert store.get(None) is None and store.get("") is None


def test_session_store_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cbr_agent.controlplane.console.sessions.MAX_SESSIONS", 3)
    clock = Clock()
    store = SessionStore(clock)
    first = store.create("a", "p")
    for _ in range(3):
        clock.now += 1
        store.create("b", "p")
    assert store.get(first.id) is None and MAX_SESSIONS > 3


@given(st.text(max_size=40))
def test_next_after_sign_in_is_always_a_console_path(value: str) -> None:
    target = local_next(value)
    assert target.startswith("/console/") and not target.startswith("//") and "\\" not in target


def test_ago() -> None:
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert ago(None, now) == "never"
    assert ago(now - timedelta(seconds=5), now) == "5 s ago"
    assert ago(now - timedelta(minutes=3, seconds=5), now) == "3 min ago"
    assert ago(now - timedelta(hours=5), now) == "5 h ago"
    assert ago(now - timedelta(days=2, hours=1), now) == "2 d ago"
    assert ago(now + timedelta(seconds=5), now) == "just now"


def test_search_parameter() -> None:
    assert parse_list_query([("search", "  web-1 ")]).search == "web-1"
    assert parse_list_query([("search", "")]).search is None
    with pytest.raises(ApiError, match="search must be at most 255"):
        parse_list_query([("search", "x" * 256)])
    with pytest.raises(ApiError, match="control characters"):
        parse_list_query([("search", "a\x00b")])
