"""Who is calling: ``X-Auth-Token``, or an AK/SK signature made as the official CBR SDK makes it.

A request is authenticated first (401 when it is not), then its credential's project must be the
project in the URL (403). For AK/SK, ``host`` and ``x-sdk-date`` must be among the signed headers and
``X-Sdk-Date`` within 15 minutes of the server's clock, so a captured request cannot be replayed
later or against another host. Within those 15 minutes it can: the SDK's scheme has no nonce, so the
state-changing calls are kept idempotent instead (README, "Replays"). Signatures are compared in
constant time (:func:`signer.verify`).
Messages never echo a secret.

A request that carries one of :data:`SINGLE_HEADERS` twice is refused before anything else (401):
servers, proxies and signers disagree on which copy counts (first, last, or both joined), so a
request whose meaning depends on that choice is not one to act on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone

from cbr_agent.api import signer
from cbr_agent.controlplane.credentials import Credentials
from cbr_agent.controlplane.faults import forbidden, unauthenticated

MAX_CLOCK_SKEW = timedelta(minutes=15)
REQUIRED_SIGNED = ("host", "x-sdk-date")
#: headers that decide who is calling, or what was signed: each at most once per request
SINGLE_HEADERS = frozenset({"authorization", "x-auth-token", "x-sdk-date", "x-security-token", "host"})
_SDK_DATE = re.compile(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z\Z")


def parse_sdk_date(value: str) -> datetime:
    """``YYYYMMDDTHHMMSSZ`` as UTC; ValueError otherwise (strptime is slow on a per-request path)."""
    match = _SDK_DATE.match(value)
    if match is None:
        raise ValueError(value)
    return datetime(*map(int, match.groups()), tzinfo=timezone.utc)


def check_single_auth_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Raise AuthError (401) when a header of :data:`SINGLE_HEADERS` appears more than once."""
    seen: set[str] = set()
    for raw_name, _ in raw_headers:
        name = raw_name.decode("latin-1").lower()
        if name in SINGLE_HEADERS:
            if name in seen:
                shown = "-".join(part.capitalize() for part in name.split("-"))
                raise unauthenticated(f"the {shown} header appears more than once; send it once")
            seen.add(name)


def _check_project(credential_project: str, url_project: str) -> None:
    if credential_project != url_project:
        raise forbidden(f"the credential is not valid for project {url_project!r}")


def authenticate(
    credentials: Credentials,
    *,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    project_id: str,
    now: datetime | None = None,
) -> None:
    """Raise AuthError (401/403) unless the request is signed or carries a token for ``project_id``.

    ``headers`` has lower-case names; ``path`` is the path as sent (percent-encoded)."""
    token = headers.get("x-auth-token")
    if token is not None:
        project = credentials.token_project(token.strip())
        if project is None:
            raise unauthenticated("X-Auth-Token is not valid")
        _check_project(project, project_id)
        return
    value = headers.get("authorization")
    if value is None:
        raise unauthenticated("authentication required: send X-Auth-Token or sign the request with AK/SK "
                              "(Authorization: SDK-HMAC-SHA256 ...)")
    try:
        auth = signer.parse_authorization(value)
    except ValueError as exc:
        raise unauthenticated(f"Authorization header is malformed: {exc}") from None
    key = credentials.access_key(auth.access_key)
    if key is None:
        raise unauthenticated("the access key in the Authorization header is not known")
    missing = [h for h in REQUIRED_SIGNED if h not in auth.signed_headers]
    if missing:
        raise unauthenticated(f"SignedHeaders must include {' and '.join(missing)}")
    _check_date(headers.get("x-sdk-date"), now or datetime.now(timezone.utc))
    if not signer.verify(method, path, query, headers, body, auth, key.sk):
        raise unauthenticated("the request signature does not match (check the SK, the signed headers "
                              "and that the body and query are sent exactly as signed)")
    _check_project(key.project_id, project_id)


def _check_date(value: str | None, now: datetime) -> None:
    if value is None:
        raise unauthenticated("X-Sdk-Date header is missing")
    try:
        signed_at = parse_sdk_date(value.strip())
    except ValueError:
        raise unauthenticated(f"X-Sdk-Date {value!r} is not in the form YYYYMMDDTHHMMSSZ") from None
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        raise unauthenticated(f"X-Sdk-Date {value} is more than 15 minutes away from the server's clock "
                              f"({signer.sdk_date(now)}); check the client's clock")
