"""Constructing the client: credentials, endpoint and option checks, and a repr without secrets."""

from __future__ import annotations

import pytest

from cbr_agent.api.client import HttpControlPlane, parse_endpoint, path_segment
from cbr_agent.api.models import ControlPlane
from cbr_agent.errors import ConfigError, UsageError
from tests.unit.api.fake_cbr_endpoint import AK, SK, TOKEN

SECURITY_TOKEN = "temporary-security-token-value"


def test_implements_the_control_plane_protocol() -> None:
    with HttpControlPlane("http://127.0.0.1:9", "p", token=TOKEN) as client:
        assert isinstance(client, ControlPlane)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "no control plane credentials"),
    ({"ak": "", "sk": "", "token": ""}, "no control plane credentials"),
    ({"ak": AK}, "ak is set but sk is missing"),
    ({"sk": SK, "token": TOKEN}, "sk is set but ak is missing"),
    ({"token": TOKEN, "security_token": SECURITY_TOKEN}, "security_token is only used with ak and sk"),
])
def test_credentials_are_required_and_complete(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        HttpControlPlane("http://127.0.0.1:9", "p", **kwargs)
    assert SK not in str(info.value) and TOKEN not in str(info.value)


def test_ak_sk_wins_over_a_token() -> None:
    client = HttpControlPlane("http://127.0.0.1:9", "p", ak=AK, sk=SK, token=TOKEN)
    assert "AkSkAuth" in repr(client)


@pytest.mark.parametrize("kwargs", [
    {"ak": AK, "sk": SK}, {"token": TOKEN}, {"ak": AK, "sk": SK, "security_token": SECURITY_TOKEN},
])
def test_repr_never_shows_a_secret(kwargs: dict) -> None:
    client = HttpControlPlane("https://cbr.example.com", "proj", **kwargs)
    text = repr(client) + str(client)
    for secret in (SK, TOKEN, SECURITY_TOKEN, AK):
        assert secret not in text
    assert "cbr.example.com" in text and "proj" in text


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("https://cbr.ap-southeast-1.myhuaweicloud.com", ("https://cbr.ap-southeast-1.myhuaweicloud.com", "",
                                                      "cbr.ap-southeast-1.myhuaweicloud.com")),
    ("cbr.example.com", ("https://cbr.example.com", "", "cbr.example.com")),
    ("http://127.0.0.1:8080/", ("http://127.0.0.1:8080", "", "127.0.0.1:8080")),
    ("https://gw.example.com:8443/cbr/", ("https://gw.example.com:8443", "/cbr", "gw.example.com:8443")),
    ("http://[::1]:8080", ("http://[::1]:8080", "", "[::1]:8080")),
])
def test_endpoint_parsing(endpoint: str, expected: tuple) -> None:
    assert parse_endpoint(endpoint) == expected


@pytest.mark.parametrize(("endpoint", "message"), [
    ("", "endpoint is empty"),
    ("ftp://cbr.example.com", "not http or https"),
    ("https://", "no host name"),
    ("https://user:hunter2@cbr.example.com", "carries user credentials"),
    ("https://cbr.example.com/?x=1", "query or fragment"),
    ("https://cbr.example.com:99999", "port"),
])
def test_bad_endpoints_are_config_errors(endpoint: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        HttpControlPlane(endpoint, "p", token=TOKEN)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"timeout": 0}, "timeout"),
    ({"timeout": -1.0}, "timeout"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"verify": "/nonexistent/ca.pem"}, "CA bundle"),
])
def test_bad_options_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HttpControlPlane("https://cbr.example.com", "p", token=TOKEN, **kwargs)


def test_empty_project_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="project_id"):
        HttpControlPlane("https://cbr.example.com", "", token=TOKEN)


def test_path_segments_are_encoded_like_the_sdk() -> None:
    assert path_segment("489654f2-363b-4ebf-966a-bdf079d97114") == "489654f2-363b-4ebf-966a-bdf079d97114"
    assert path_segment("a/b c~d") == "a%2Fb%20c~d"
    assert path_segment("..") == "%2E%2E" and path_segment(".") == "%2E"
    with pytest.raises(UsageError, match="empty id"):
        path_segment("")
