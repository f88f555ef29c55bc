"""Credentials of the HTTP client: an IAM token or an AK/SK pair, turned into request headers.

Both kinds keep their secret in a private attribute and never show it in ``repr``. AK/SK signing
follows the SDK (shared/spec/auth-and-errors.md, section 2.2): the headers signed are exactly those
given to :func:`cbr_agent.api.signer.sign` (Content-Type, Host, X-Project-Id, X-Sdk-Date and, for
temporary credentials, X-Security-Token); anything added afterwards (User-Agent, Accept, ...) is
sent unsigned.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from cbr_agent.api import signer
from cbr_agent.errors import ConfigError


class Credentials(Protocol):
    kind: str

    def headers(
        self,
        method: str,
        path: str,
        pairs: Sequence[tuple[str, str]],
        base: dict[str, str],
        body: bytes,
        *,
        now: datetime | None = None,
    ) -> dict[str, str]:
        """The request headers: ``base`` (Content-Type, Host) plus the authentication headers."""
        ...


class TokenAuth:
    kind = "token"

    def __init__(self, token: str) -> None:
        self._token = token

    def headers(
        self,
        method: str,
        path: str,
        pairs: Sequence[tuple[str, str]],
        base: dict[str, str],
        body: bytes,
        *,
        now: datetime | None = None,
    ) -> dict[str, str]:
        return {**base, "X-Auth-Token": self._token}

    def __repr__(self) -> str:
        return "TokenAuth(token='***')"


class AkSkAuth:
    kind = "ak/sk"

    def __init__(self, ak: str, sk: str, project_id: str, security_token: str | None = None) -> None:
        self.ak = ak
        self._sk = sk
        self._project_id = project_id
        self._security_token = security_token

    def headers(
        self,
        method: str,
        path: str,
        pairs: Sequence[tuple[str, str]],
        base: dict[str, str],
        body: bytes,
        *,
        now: datetime | None = None,
    ) -> dict[str, str]:
        # a fresh dict (and so a fresh X-Sdk-Date) on every call: each retry is signed anew
        headers = {**base, "X-Project-Id": self._project_id}
        if self._security_token:
            headers["X-Security-Token"] = self._security_token
        signer.sign(method, path, pairs, headers, body, self.ak, self._sk, now=now)
        return headers

    def __repr__(self) -> str:
        temporary = ", security_token='***'" if self._security_token else ""
        return f"AkSkAuth(ak={redact_ak(self.ak)!r}, sk='***'{temporary})"


def redact_ak(ak: str) -> str:
    """The first four characters of an access key: enough to tell keys apart in a log."""
    return ak[:4] + "***" if len(ak) > 8 else "***"


def credentials_from(
    project_id: str,
    *,
    ak: str | None = None,
    sk: str | None = None,
    token: str | None = None,
    security_token: str | None = None,
) -> Credentials:
    """AK/SK when both are given (the reference's recommended method), else the token.

    Half an AK/SK pair, or a security token without AK/SK, is a configuration mistake and refused
    rather than silently falling back to the token."""
    ak, sk, token, security_token = (v or None for v in (ak, sk, token, security_token))
    if (ak is None) != (sk is None):
        missing, given = ("sk", "ak") if sk is None else ("ak", "sk")
        raise ConfigError(f"{given} is set but {missing} is missing; set both ak and sk, or use a token")
    if ak is not None and sk is not None:
        return AkSkAuth(ak, sk, project_id, security_token)
    if security_token is not None:
        raise ConfigError("security_token is only used with ak and sk (temporary credentials); set them")
    if token is not None:
        return TokenAuth(token)
    raise ConfigError("no control plane credentials: set ak and sk (AK/SK signing) or token")
