"""Error answers: parsed like the SDK's DefaultExceptionHandler and mapped onto the exception tree."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbr_agent.api.client import HttpControlPlane, error_from_response, parse_error_body
from cbr_agent.cli.exitcodes import AUTH, FAILURE, NOT_FOUND, UNAVAILABLE, exit_code_for
from cbr_agent.errors import (
    ApiError,
    ApiUnavailable,
    AuthError,
    ControlPlaneUnavailable,
    NotFoundError,
)
from tests.unit.api.fake_cbr_endpoint import AK, PROJECT_ID, SK, Reply, ScriptedServer, SleepRecorder


@pytest.fixture
def client(server: ScriptedServer, sleeps: SleepRecorder) -> HttpControlPlane:
    with HttpControlPlane(server.url, PROJECT_ID, ak=AK, sk=SK, sleep=sleeps) as cp:
        yield cp


@pytest.mark.parametrize(("status", "code", "cls", "exit_code"), [
    (400, "BackupService.9900", ApiError, FAILURE),
    (401, "APIGW.0301", AuthError, AUTH),
    (403, "APIGW.0302", AuthError, AUTH),
    (404, "BackupService.6302", NotFoundError, NOT_FOUND),
    (409, "BackupService.6106", ApiError, FAILURE),
    (501, "APIGW.0101", ApiUnavailable, UNAVAILABLE),
])
def test_status_maps_to_the_exception_class(server: ScriptedServer, client: HttpControlPlane,
                                            sleeps: SleepRecorder, status: int, code: str, cls: type,
                                            exit_code: int) -> None:
    server.script(Reply(status, {"error_code": code, "error_msg": "what went wrong"},
                        headers={"X-Request-Id": "req-123"}))

    with pytest.raises(ApiError) as info:
        client.show_agent("a1")

    error = info.value
    assert type(error) is cls
    assert (error.status, error.error_code, error.error_msg, error.request_id) == (
        status, code, "what went wrong", "req-123")
    assert f"{status} {code}: what went wrong" in str(error)
    assert exit_code_for(error) == exit_code
    assert len(server.received) == 1 and sleeps.calls == []  # none of these is retried


def test_500_after_retries_is_an_api_error_that_counts_as_unavailable(server: ScriptedServer,
                                                                       sleeps: SleepRecorder) -> None:
    server.script(Reply(500, {"error_code": "BackupService.9910", "error_msg": "Unknown error."}))
    with HttpControlPlane(server.url, PROJECT_ID, ak=AK, sk=SK, max_attempts=1, sleep=sleeps) as client, \
            pytest.raises(ApiUnavailable) as info:
        client.show_agent("a1")
    assert isinstance(info.value, ApiError) and isinstance(info.value, ControlPlaneUnavailable)
    assert (info.value.status, info.value.error_code) == (500, "BackupService.9910")
    assert exit_code_for(info.value) == UNAVAILABLE


def test_cbr_authentication_failure_500_is_an_auth_error_and_not_retried(
        server: ScriptedServer, client: HttpControlPlane, sleeps: SleepRecorder) -> None:
    server.script(Reply(500, {"error_code": "BackupService.9998", "error_msg": "Authentication failed."}))
    with pytest.raises(AuthError) as info:
        client.show_agent("a1")
    assert info.value.status == 500
    assert len(server.received) == 1 and sleeps.calls == []


@pytest.mark.parametrize(("body", "code", "message"), [
    ({"errorCode": "IMG.0001", "errorMsg": "camel"}, "IMG.0001", "camel"),
    ({"code": "APIGW.0301", "message": "plain"}, "APIGW.0301", "plain"),
    ({"error": {"code": "APIGW.0308", "message": "nested"}, "request_id": "x"}, "APIGW.0308", "nested"),
    ({"outer": {"inner": {"error_code": "X.1", "error_msg": "deep"}}}, "X.1", "deep"),
    ({"error_code": "E.1", "error_msg": "first", "code": "E.2", "message": "second"}, "E.1", "first"),
    ({"error_code": 42, "error_msg": "numeric code"}, "42", "numeric code"),
])
def test_error_body_shapes(server: ScriptedServer, client: HttpControlPlane, body: dict, code: str,
                           message: str) -> None:
    server.script(Reply(400, body))
    with pytest.raises(ApiError) as info:
        client.show_agent("a1")
    assert (info.value.error_code, info.value.error_msg) == (code, message)


@pytest.mark.parametrize(("raw", "message"), [
    (b"<html>\n<body>Bad Request</body>\n</html>", "<html> <body>Bad Request</body> </html>"),
    (b'["not", "an", "object"]', '["not", "an", "object"]'),
    (b'{"only": "unrelated"}', '{"only": "unrelated"}'),
    (b"", "Bad Request"),  # no body at all: the reason phrase
])
def test_non_json_or_codeless_bodies_fall_back_to_status_and_raw_text(
        server: ScriptedServer, client: HttpControlPlane, raw: bytes, message: str) -> None:
    server.script(Reply(400, raw, headers={"Content-Type": "text/html"}))
    with pytest.raises(ApiError) as info:
        client.show_agent("a1")
    assert (info.value.status, info.value.error_code, info.value.error_msg) == (400, "400", message)
    assert "\n" not in str(info.value)  # one line for the user


def test_long_raw_bodies_are_cut_to_one_short_line() -> None:
    error = error_from_response(502, b"x" * 5000 + b"\n" + b"y" * 10, {}, "Bad Gateway")
    assert len(error.error_msg) == 300 and error.error_msg.endswith("...")
    assert isinstance(error, ApiUnavailable)


def test_encoded_authorization_message_is_kept() -> None:
    body = json.dumps({"error_code": "APIGW.0302", "error_msg": "denied",
                       "encoded_authorization_message": "ENC123"}).encode()
    error = error_from_response(403, body, {"X-Request-Id": "r1"})
    assert isinstance(error, AuthError)
    assert error.encoded_authorization_message == "ENC123"  # type: ignore[attr-defined]


def test_a_200_that_is_not_json_is_unavailable_not_a_crash(server: ScriptedServer,
                                                           client: HttpControlPlane) -> None:
    server.script(Reply(200, b"<html>captive portal</html>", headers={"Content-Type": "text/html"}))
    with pytest.raises(ControlPlaneUnavailable, match="cannot be read"):
        client.show_agent("a1")


def test_a_200_with_malformed_fields_is_unavailable_not_a_crash(server: ScriptedServer,
                                                                client: HttpControlPlane) -> None:
    server.script(Reply(200, {"agent": {"agent_id": "a1", "created_at": "yesterday"}}))
    with pytest.raises(ControlPlaneUnavailable, match="cannot be read"):
        client.show_agent("a1")


def test_a_redirect_is_not_followed(server: ScriptedServer, client: HttpControlPlane) -> None:
    server.script(Reply(302, b"", headers={"Location": "http://127.0.0.1:9/elsewhere"}))
    with pytest.raises(ApiError) as info:
        client.show_agent("a1")
    assert info.value.status == 302 and len(server.received) == 1


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=10)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=4), st.text(min_size=1, max_size=20),
       st.text(min_size=1, max_size=20).filter(lambda s: s.strip()))
def test_top_level_error_code_and_msg_always_win(extra: dict, code: str, message: str) -> None:
    body = {**extra, "error_code": code, "error_msg": message}
    assert parse_error_body(json.dumps(body))[:2] == (code, " ".join(message.split()))


@given(json_values)
def test_any_json_body_parses_without_raising(value: object) -> None:
    error = error_from_response(400, json.dumps(value).encode(), {})
    assert error.status == 400 and error.error_code and "\n" not in str(error)
