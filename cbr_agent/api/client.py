"""The CBR agents API over HTTP(S): :class:`HttpControlPlane`, one implementation of ``ControlPlane``.

Wire format as the reference and the SDK have it (shared/spec/agents-api.md): JSON bodies serialized
once and sent as the very bytes that were signed, the canonical query string sent as the URL's query,
path parameters percent-encoded with ``quote(v, safe='')``, ``Content-Type:
application/json;charset=utf-8`` with a body and ``application/json`` without. Errors are parsed like
the SDK's ``DefaultExceptionHandler`` (shared/spec/auth-and-errors.md, section 3.1).

Retries (:mod:`cbr_agent.api.retry` has the numbers). A failed attempt falls in one of two kinds:

- *certainly not processed*: connection refused, DNS failure, connect timeout, 429 (the server
  rejected it before acting). Safe to repeat for any call.
- *maybe processed*: read timeout, connection dropped after the request was sent, 5xx. Repeating it is
  safe only for an idempotent call, so every call says whether it is (``idempotent=``).

With this project's design all seven agent calls are idempotent in their effect on the control
plane's state: register is an upsert that doubles as the heartbeat (DESIGN.md, decision 1), PUT sets a
status, add-path and remove-path are set operations (adding an existing path only refreshes its
excludes), show and list only read, and DELETE of an agent that is already gone changes nothing. What
is *not* idempotent is what some calls report, when an earlier attempt was processed but its answer
was lost:

- add-path reports under ``existed`` a path that the lost attempt added (and remove-path under
  ``not_existed`` one it removed); callers must treat ``added + existed`` as "now present" and
  ``removed + not_existed`` as "now absent", never count on the split;
- register re-asserts status ``normal``: a retry that lands after a concurrent ``uninstall`` undoes it,
  which the next heartbeat would do anyway (an agent that heartbeats is installed, DESIGN.md);
- DELETE answers 404 on the retry, because the lost attempt already removed the agent (and, in real
  CBR, all its backups). The client turns that one 404 into success, since "the agent is gone" is what
  was asked; a 404 on the *first* attempt stays a :class:`NotFoundError`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from cbr_agent import __version__
from cbr_agent.api.auth import Credentials, credentials_from
from cbr_agent.api.models import (
    AddPathResult,
    Agent,
    AgentPage,
    AgentRegistration,
    RemovePathResult,
)
from cbr_agent.api.retry import AUTH_FAILED_500, Failure, RetryPolicy, classify_failure, worth_retrying
from cbr_agent.api.signer import canonical_query
from cbr_agent.errors import (
    ApiError,
    ApiUnavailable,
    AuthError,
    ConfigError,
    ControlPlaneUnavailable,
    NotFoundError,
    UsageError,
)

log = logging.getLogger(__name__)

JSON = "application/json"
JSON_WITH_BODY = "application/json;charset=utf-8"
#: a TCP/TLS handshake slower than this is a dead endpoint, whatever the read timeout
CONNECT_TIMEOUT_CAP = 10.0
#: connections kept per host: the daemon's heartbeat, path sync and a CLI call at once, with room
POOL_SIZE = 8
MAX_ERROR_TEXT = 300


class HttpControlPlane:
    """The control plane at ``endpoint`` (``https://host[:port][/prefix]``; no scheme means https)."""

    def __init__(
        self,
        endpoint: str,
        project_id: str,
        *,
        ak: str | None = None,
        sk: str | None = None,
        token: str | None = None,
        security_token: str | None = None,
        verify: bool | str = True,
        timeout: float = 30.0,
        max_attempts: int = 4,
        user_agent: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not project_id:
            raise ConfigError("project_id is empty; set it to the IAM project id of the region")
        self._auth: Credentials = credentials_from(
            project_id, ak=ak, sk=sk, token=token, security_token=security_token)
        self._origin, self._base_path, self._host = parse_endpoint(endpoint)
        self.endpoint = self._origin + self._base_path
        self.project_id = project_id
        if not timeout > 0:
            raise ConfigError(f"request timeout must be a positive number of seconds, got {timeout!r}")
        self._timeouts = (min(timeout, CONNECT_TIMEOUT_CAP), timeout)
        if isinstance(verify, str) and not os.path.exists(verify):  # a file, or an OpenSSL CA dir
            raise ConfigError(f"CA bundle {verify!r} does not exist; fix ca_bundle")
        self._verify = verify
        if verify is False and self._origin.startswith("https:"):
            log.warning("TLS certificate verification is off for %s (tls_verify=false)", self.endpoint)
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, got {max_attempts}")
        self.retry_policy = RetryPolicy(max_attempts=max_attempts)
        self._sleep = sleep
        self._session = _new_session(user_agent or f"cbr-agent/{__version__}")

    # --- the seven agent APIs -------------------------------------------------------------------

    def register_agent(self, registration: AgentRegistration) -> Agent:
        body = self._call("POST", ["agents"], payload=registration.to_wire(), idempotent=True)
        return _agent(body, registration.agent_id)

    def show_agent(self, agent_id: str) -> Agent:
        return _agent(self._call("GET", ["agents", agent_id], idempotent=True), agent_id)

    def list_agents(
        self,
        *,
        agent_ids: Sequence[str] = (),
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> AgentPage:
        pairs = [("agent_id", str(a)) for a in agent_ids]
        if status is not None:
            pairs.append(("status", status))
        if limit is not None:
            pairs.append(("limit", str(int(limit))))  # a String in the reference and the SDK
        if offset:
            pairs.append(("offset", str(int(offset))))  # 0 is the default; the reference wants > 0
        body = self._call("GET", ["agents"], query=pairs, idempotent=True)
        try:
            agents = tuple(Agent.from_wire(a) for a in body.get("agents") or ())
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._unreadable("GET", exc) from exc
        return AgentPage(
            agents=agents,
            count=_int(body.get("count"), len(agents)),
            limit=_int(body.get("limit"), len(agents) if limit is None else int(limit)),
            offset=_int(body.get("offset"), int(offset)),
        )

    def update_agent(self, agent_id: str, status: str = "uninstall") -> Agent:
        payload = {"agent": {"status": status}}
        return _agent(self._call("PUT", ["agents", agent_id], payload=payload, idempotent=True), agent_id)

    def add_paths(
        self,
        agent_id: str,
        paths: Sequence[str],
        excludes: Mapping[str, Sequence[str]] | None = None,
    ) -> AddPathResult:
        payload: dict[str, Any] = {"add_path": list(paths)}
        if excludes:
            payload["exclude_path"] = [
                {"path_name": path, "exclude_path_name": list(names)} for path, names in excludes.items()
            ]
        body = self._call("POST", ["agents", agent_id, "add-path"], payload=payload, idempotent=True)
        return AddPathResult(added=_strings(body.get("added")), existed=_strings(body.get("existed")))

    def remove_paths(self, agent_id: str, paths: Sequence[str]) -> RemovePathResult:
        payload = {"remove_path": list(paths)}
        body = self._call("POST", ["agents", agent_id, "remove-path"], payload=payload, idempotent=True)
        return RemovePathResult(
            removed=_strings(body.get("removed")), not_existed=_strings(body.get("not_existed")))

    def remove_agent(self, agent_id: str) -> None:
        self._call("DELETE", ["agents", agent_id], idempotent=True, gone_is_done=True)

    # --- the CBR calls (vaults, policies, backups, tasks) and the agent-facing extensions --------

    def cbr_call(
        self,
        method: str,
        segments: Sequence[str],
        *,
        query: Iterable[tuple[str, str]] = (),
        payload: Any = None,
        idempotent: bool = True,
        read_timeout: float | None = None,
    ) -> dict[str, Any]:
        """``method /v3/{project_id}/{segments}``: the JSON answer (``{}`` for 202/204). The same
        call on :class:`~cbr_agent.controlplane.embedded.EmbeddedControlPlane` answers alike;
        ``read_timeout`` is for the long poll, which holds the answer longer than a usual call."""
        return self._call(method, segments, query=query, payload=payload, idempotent=idempotent,
                          read_timeout=read_timeout)

    # --- lifecycle ----------------------------------------------------------------------------------

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> HttpControlPlane:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"HttpControlPlane(endpoint={self.endpoint!r}, project_id={self.project_id!r}, "
                f"auth={self._auth!r})")

    # --- one call, with retries -------------------------------------------------------------------

    def _call(
        self,
        method: str,
        segments: Sequence[str],
        *,
        query: Iterable[tuple[str, str]] = (),
        payload: Any = None,
        idempotent: bool,
        gone_is_done: bool = False,
        read_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send ``method`` to ``/v3/{project_id}/{segments}``; the parsed JSON object of a 2xx answer.

        ``gone_is_done``: a 404 after an attempt that may have been processed means that attempt did
        the job (DELETE); answer ``{}`` instead of raising."""
        path = self._path(segments)
        pairs = sorted(query)
        url = self._origin + path + (f"?{canonical_query(pairs)}" if pairs else "")
        body = b"" if payload is None else _json_bytes(payload)
        base = {"Content-Type": JSON_WITH_BODY if body else JSON, "Host": self._host}
        attempts = self.retry_policy.max_attempts
        maybe_processed = False
        for attempt in range(1, attempts + 1):
            headers = self._auth.headers(method, path, pairs, base, body)  # re-signed every attempt
            try:
                response = self._send(method, url, headers, body, read_timeout)
            except requests.RequestException as exc:
                failure = classify_failure(exc)
                repeatable = failure.retryable and (idempotent or not failure.maybe_processed)
                if attempt == attempts or not repeatable:
                    raise self._no_answer(method, failure, attempt) from exc
                maybe_processed = maybe_processed or failure.maybe_processed
                self._wait(method, path, failure.reason, attempt, self.retry_policy.delay(attempt))
                continue
            status = response.status_code
            if 200 <= status < 300:
                return self._json_object(method, response)
            error = error_from_response(status, response.content, response.headers, response.reason)
            if gone_is_done and maybe_processed and status == 404:
                log.info("%s %s: 404 after an attempt whose answer was lost; it is done", method, path)
                return {}
            if attempt < attempts and worth_retrying(status, error.error_code, idempotent):
                maybe_processed = maybe_processed or status >= 500
                delay = self.retry_policy.delay(attempt, response.headers.get("Retry-After"))
                self._wait(method, path, f"answered {status}", attempt, delay)
                continue
            if attempt > 1:
                error.hint = "; ".join(filter(None, [f"{attempt} attempts failed", error.hint]))
            raise error
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _send(self, method: str, url: str, headers: dict[str, str], body: bytes,
              read_timeout: float | None = None) -> requests.Response:
        session = self._session
        prepared = session.prepare_request(requests.Request(method, url, headers=headers, data=body or None))
        # requests "requotes" a URL (it would turn an encoded %2E back into "."); send ours untouched
        prepared.url = url
        settings = session.merge_environment_settings(url, {}, None, self._verify, None)
        timeouts = self._timeouts if read_timeout is None else (self._timeouts[0], read_timeout)
        return session.send(prepared, timeout=timeouts, allow_redirects=False, **settings)

    def _path(self, segments: Sequence[str]) -> str:
        return "/".join([self._base_path, "v3", path_segment(self.project_id),
                         *(path_segment(s) for s in segments)])

    def _wait(self, method: str, path: str, reason: str, attempt: int, delay: float) -> None:
        log.info("%s %s: %s; attempt %d of %d failed, next in %.2f s",
                 method, path, reason, attempt, self.retry_policy.max_attempts, delay)
        self._sleep(delay)

    def _no_answer(self, method: str, failure: Failure, attempts: int) -> ControlPlaneUnavailable:
        tried = "" if attempts == 1 else f" (after {attempts} attempts)"
        return ControlPlaneUnavailable(
            f"control plane at {self.endpoint} did not answer {method}: {failure.reason}{tried}",
            hint=failure.hint)

    def _unreadable(self, method: str, exc: BaseException) -> ControlPlaneUnavailable:
        return ControlPlaneUnavailable(
            f"control plane at {self.endpoint} answered {method} with a response that cannot be read "
            f"({type(exc).__name__}: {_one_line(str(exc))})",
            hint="check that 'endpoint' points at a CBR control plane")

    def _json_object(self, method: str, response: requests.Response) -> dict[str, Any]:
        if not response.content.strip():
            return {}  # DELETE answers 200 with an empty body
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            raise self._unreadable(method, exc) from exc
        if not isinstance(data, dict):
            raise self._unreadable(method, TypeError(f"expected a JSON object, got {type(data).__name__}"))
        return data


# --- helpers ---------------------------------------------------------------------------------------


def error_from_response(
    status: int, content: bytes, headers: Mapping[str, str], reason: str | None = None
) -> ApiError:
    """The :class:`ApiError` (subclass by status) for an error answer, parsed like the SDK."""
    request_id = headers.get("X-Request-Id")
    text = content.decode("utf-8", errors="replace")
    code, message, encoded = parse_error_body(text)
    if code is None:
        code = str(status)
    if not message:
        message = _one_line(text) or reason or "no error message"
    if status in (401, 403) or code == AUTH_FAILED_500:
        cls: type[ApiError] = AuthError
    elif status == 404:
        cls = NotFoundError
    elif status == 429 or status >= 500:
        cls = ApiUnavailable
    else:
        cls = ApiError
    error = cls(status, code, message, request_id=request_id)
    if encoded is not None:
        error.encoded_authorization_message = encoded  # type: ignore[attr-defined]
    return error


def parse_error_body(text: str) -> tuple[str | None, str | None, str | None]:
    """``(error_code, error_msg, encoded_authorization_message)`` of a JSON error body, Nones if absent.

    Like the SDK: the pairs ``error_code``/``error_msg``, ``errorCode``/``errorMsg`` and
    ``code``/``message``, in that order, at the top level; else the first nested object (depth
    first) that has one of them."""
    try:
        data = json.loads(text)
    except ValueError:
        return None, None, None
    if not isinstance(data, dict):
        return None, None, None
    encoded = data.get("encoded_authorization_message")
    found = _find_error_pair(data)
    code, message = found if found else (None, None)
    return code, message, None if encoded is None else str(encoded)


_ERROR_PAIRS = (("error_code", "error_msg"), ("errorCode", "errorMsg"), ("code", "message"))


def _find_error_pair(data: Mapping[str, Any], depth: int = 0) -> tuple[str | None, str | None] | None:
    for code_key, message_key in _ERROR_PAIRS:
        if code_key in data and message_key in data:
            code, message = data[code_key], data[message_key]
            text = "" if message is None else _one_line(str(message))
            return (str(code) if code not in (None, "") else None, text or None)
    if depth < 8:
        for value in data.values():
            if isinstance(value, dict) and (found := _find_error_pair(value, depth + 1)):
                return found
    return None


def parse_endpoint(endpoint: str) -> tuple[str, str, str]:
    """``(origin, base_path, host)`` of the endpoint URL; ConfigError if it is not a usable URL."""
    text = (endpoint or "").strip()
    if not text:
        raise ConfigError(
            "endpoint is empty; set it to the control plane URL, e.g. https://cbr.REGION.myhuaweicloud.com")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = f"scheme {parts.scheme!r} is not http or https"
    elif not parts.hostname:
        problem = "it has no host name"
    elif "@" in parts.netloc:
        problem = "it carries user credentials; put them in ak/sk or token"
    elif parts.query or parts.fragment:
        problem = "it has a query or fragment"
    if problem is None:
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            problem = "its port is not a number from 0 to 65535"
    if problem is not None:
        shown = endpoint if "@" not in endpoint else "(not shown)"
        raise ConfigError(f"endpoint {shown!r} is not usable: {problem}")
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/"), parts.netloc


def path_segment(value: str) -> str:
    """A path parameter, percent-encoded as the SDK does (``quote(v, safe='')``).

    ``.`` and ``..`` would be removed by URL normalization on the way (and change the target), so
    their dots are encoded; an empty value would name another resource, so it is refused."""
    if not value:
        raise UsageError("an empty id cannot name an agent or project; give a non-empty id")
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded


def _json_bytes(payload: Any) -> bytes:
    # serialized once: exactly these bytes are hashed for the signature and sent
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _new_session(user_agent: str) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=POOL_SIZE, max_retries=0)  # we retry
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = user_agent
    session.headers["Accept"] = JSON
    # never let requests add ~/.netrc credentials to our requests (trust_env stays on for proxies)
    session.auth = _no_extra_auth
    return session


def _no_extra_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


def _agent(body: Mapping[str, Any], agent_id: str) -> Agent:
    """The ``agent`` object of a response; every field optional, so the id asked for fills a gap."""
    data = body.get("agent")
    data = dict(data) if isinstance(data, Mapping) else {}
    if not data.get("agent_id"):
        data["agent_id"] = agent_id
    try:
        return Agent.from_wire(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ControlPlaneUnavailable(
            f"control plane answered with an agent that cannot be read ({type(exc).__name__}: "
            f"{_one_line(str(exc))})", hint="check that 'endpoint' points at a CBR control plane") from exc


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _one_line(text: str) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= MAX_ERROR_TEXT else flat[: MAX_ERROR_TEXT - 3] + "..."
