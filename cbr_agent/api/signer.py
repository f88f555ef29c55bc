"""AK/SK request signing, ``SDK-HMAC-SHA256``, exactly as the official CBR SDK makes it.

The same functions sign on the client and verify on the server: the server rebuilds the canonical
request from what it received and compares signatures in constant time. See
``shared/spec/auth-and-errors.md`` section 2.2 for the algorithm and the test vectors.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_uri(path: str) -> str:
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """``pairs`` with list values already expanded into repeated keys."""
    return "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(pairs))


def sdk_date(now: datetime | None = None) -> str:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(DATE_FORMAT)


def parse_sdk_date(value: str) -> datetime:
    return datetime.strptime(value, DATE_FORMAT).replace(tzinfo=timezone.utc)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    if not body:
        return EMPTY_SHA256
    declared = _header(headers, "X-Sdk-Content-Sha256")
    if declared is not None:
        return declared.strip()
    return hashlib.sha256(body).hexdigest()


def string_to_sign(
    method: str,
    path: str,
    pairs: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: Iterable[str],
    body: bytes,
) -> str:
    lowered = {k.lower(): str(v).strip() for k, v in headers.items()}
    names = list(signed_headers)
    canonical_headers = "".join(f"{name}:{lowered.get(name, '')}\n" for name in names)
    request = "\n".join([
        method.upper(),
        canonical_uri(path),
        canonical_query(pairs),
        canonical_headers,
        ";".join(names),
        payload_hash(headers, body),
    ])
    digest = hashlib.sha256(request.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{lowered['x-sdk-date']}\n{digest}"


def signature(secret_key: str, to_sign: str) -> str:
    return hmac.new(secret_key.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def sign(
    method: str,
    path: str,
    pairs: Iterable[tuple[str, str]],
    headers: MutableMapping[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    *,
    host: str | None = None,
    now: datetime | None = None,
) -> None:
    """Add ``X-Sdk-Date`` (unless present), ``Host`` (when given and absent) and ``Authorization``
    to ``headers`` in place. Send exactly ``body`` and the query built by :func:`canonical_query`."""
    content_type = _header(headers, "Content-Type")
    if content_type and not content_type.startswith(("application/json", "application/bson")):
        headers["X-Sdk-Content-Sha256"] = UNSIGNED_PAYLOAD
    if _header(headers, "X-Sdk-Date") is None:
        headers["X-Sdk-Date"] = sdk_date(now)
    if host is not None and _header(headers, "Host") is None:
        headers["Host"] = host
    names = sorted(k.lower() for k in headers if "_" not in k)
    to_sign = string_to_sign(method, path, list(pairs), headers, names, body)
    headers["Authorization"] = (
        f"{ALGORITHM} Access={access_key}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature(secret_key, to_sign)}"
    )


@dataclass(frozen=True)
class Authorization:
    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> Authorization:
    """Parse ``SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex``; ValueError if malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported signing algorithm {algorithm!r}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            raise ValueError("malformed Authorization header")
        parts[key] = val
    try:
        names = tuple(n for n in parts["SignedHeaders"].split(";") if n)
        return Authorization(parts["Access"], names, parts["Signature"])
    except KeyError as exc:
        raise ValueError(f"Authorization header lacks {exc.args[0]}") from None


def verify(
    method: str,
    path: str,
    pairs: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    auth: Authorization,
    secret_key: str,
) -> bool:
    """True when ``auth.signature`` is the signature of this request under ``secret_key``.

    The caller checks separately that ``host`` and ``x-sdk-date`` are among the signed headers and
    that the date is fresh."""
    to_sign = string_to_sign(method, path, pairs, headers, auth.signed_headers, body)
    # as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500 on the server)
    return hmac.compare_digest(signature(secret_key, to_sign).encode("ascii"),
                               auth.signature.encode("utf-8", "surrogatepass"))
