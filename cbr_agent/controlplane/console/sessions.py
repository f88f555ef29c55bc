"""Console sessions, kept on the server: the browser holds only a random session id.

The cookie (``cbr_console``) is HttpOnly, SameSite=Strict, limited to ``/console`` and Secure when the
server speaks HTTPS. The token the user signed in with stays in server memory (sessions end when the
server restarts: signing in again is the cost, never a token readable by page scripts or left on
disk). Every session has its own CSRF token, required in every state-changing form.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "cbr_console"
LOGIN_COOKIE = "cbr_console_login"
COOKIE_PATH = "/console"
#: a session ends after this long without a request, and this long after sign-in whatever happens
IDLE_SECONDS = 2 * 3600
ABSOLUTE_SECONDS = 12 * 3600
MAX_SESSIONS = 10_000


@dataclass
class Session:
    id: str
    token: str
    project_id: str
    created: float
    seen: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))


def same_secret(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class SessionStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, token: str, project_id: str) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), token, project_id, now, now)
        with self._lock:
            if len(self._sessions) >= MAX_SESSIONS:  # drop the least recently used
                oldest = min(self._sessions.values(), key=lambda s: s.seen)
                del self._sessions[oldest.id]
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > IDLE_SECONDS or now - session.created > ABSOLUTE_SECONDS:
                del self._sessions[session_id]
                return None
            session.seen = now
            return session

    def drop(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
