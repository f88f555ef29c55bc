"""The one place that maps errors to exit codes (documented in the README)."""

from __future__ import annotations

from cbr_agent import errors

OK = 0
FAILURE = 1
USAGE = 2
WARNINGS = 3
UNAVAILABLE = 4
AUTH = 5
NOT_FOUND = 6
REPOSITORY_NOT_FOUND = 10
REPOSITORY_LOCKED = 11
WRONG_PASSWORD = 12
INTERRUPTED = 130

# most specific first: the first matching class wins
_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (errors.UsageError, USAGE),
    (errors.ConfigError, USAGE),
    (errors.AuthError, AUTH),
    (errors.NotFoundError, NOT_FOUND),
    (errors.ControlPlaneUnavailable, UNAVAILABLE),
    (errors.RepositoryNotFound, REPOSITORY_NOT_FOUND),
    (errors.RepositoryLocked, REPOSITORY_LOCKED),
    (errors.WrongPassword, WRONG_PASSWORD),
    (errors.RepositoryAccessDenied, AUTH),
    (errors.RepositoryUnavailable, UNAVAILABLE),
    (errors.Cancelled, INTERRUPTED),
    (KeyboardInterrupt, INTERRUPTED),
)


def exit_code_for(exc: BaseException) -> int:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return FAILURE
