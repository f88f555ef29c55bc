"""The errors the control plane answers with: HTTP status, ``error_code`` and message, in one place.

The server sends these as ``{"error_code", "error_msg"}``; the embedded control plane raises the very
same exceptions, so a caller sees the same status and code whichever side it talks to. The reference
has no agent-specific codes (shared/spec/auth-and-errors.md, section 3.3), so the generic ones are used:
``BackupService.*`` for what the CBR service itself decides, ``APIGW.*`` for what its API gateway
decides (authentication, routing, size limits).
"""

from __future__ import annotations

from cbr_agent.errors import ApiError, AuthError, NotFoundError

#: parameter verification failed (any bad request body, query or path parameter)
INVALID_PARAMETER = "BackupService.9900"
#: resource does not exist (an unknown agent_id)
RESOURCE_NOT_FOUND = "BackupService.6302"
#: unknown error (a bug or an unusable database)
INTERNAL = "BackupService.9910"
#: the gateway's "API does not exist" (unknown URL or method)
NO_SUCH_API = "APIGW.0101"
#: the gateway's "bad request" family: here a body over the size limit, or a request sent too slowly
REQUEST_TOO_LARGE = "APIGW.0201"
#: the gateway's "request throttled": here more connections open than --max-connections
OVERLOADED = "APIGW.0308"
#: the gateway's "incorrect IAM authentication information" (bad or missing token or signature)
UNAUTHENTICATED = "APIGW.0301"
#: the gateway's "the IAM user is not authorized to access the API" (project mismatch)
FORBIDDEN = "APIGW.0302"

MAX_BODY_BYTES = 12 * 1024 * 1024


def bad_request(message: str) -> ApiError:
    return ApiError(400, INVALID_PARAMETER, message)


def unsupported_media_type(content_type: str | None) -> ApiError:
    got = f"got {content_type!r}" if content_type else "none given"
    return ApiError(415, INVALID_PARAMETER, f"Content-Type must be application/json ({got})")


def agent_not_found(agent_id: str) -> NotFoundError:
    return NotFoundError(404, RESOURCE_NOT_FOUND, f"agent_id {agent_id!r} does not exist")


def unauthenticated(message: str) -> AuthError:
    return AuthError(401, UNAUTHENTICATED, message)


def forbidden(message: str) -> AuthError:
    return AuthError(403, FORBIDDEN, message)


def too_large(size: int | None = None) -> ApiError:
    told = f" ({size} bytes)" if size is not None else ""
    return ApiError(413, REQUEST_TOO_LARGE,
                    f"request body is larger than {MAX_BODY_BYTES} bytes{told}; send less per request")


def no_such_api(method: str, path: str) -> ApiError:
    return ApiError(404, NO_SUCH_API, f"no API {method} {path}")


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(405, NO_SUCH_API, f"method {method} is not allowed on {path}")


def internal(message: str = "internal error; see the server log") -> ApiError:
    return ApiError(500, INTERNAL, message)


def request_timeout(part: str, seconds: float) -> ApiError:
    return ApiError(408, REQUEST_TOO_LARGE, f"the request {part} was not received within {seconds:g} s; "
                    "send whole requests without pausing")


def overloaded() -> ApiError:
    return ApiError(503, OVERLOADED, "the server has too many open connections; retry in a moment")


def header_too_large(limit: int) -> ApiError:
    return ApiError(431, REQUEST_TOO_LARGE, f"the request line and headers are larger than {limit} bytes")
