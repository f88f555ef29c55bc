"""The server's credentials file and request authentication."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cbr_agent.api import signer
from cbr_agent.controlplane.auth import authenticate
from cbr_agent.controlplane.credentials import load_credentials
from cbr_agent.errors import AuthError, ConfigError

GOOD = """
[[access_keys]]
ak = "AK1"
sk = "secret-1"
project_id = "proj"

[[tokens]]
token = "tok-1"
project_id = "proj"
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "credentials.toml"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_load_good_file(tmp_path: Path) -> None:
    creds = load_credentials(write(tmp_path, GOOD))
    key = creds.access_key("AK1")
    assert key is not None and (key.sk, key.project_id) == ("secret-1", "proj")
    assert creds.token_project("tok-1") == "proj"
    assert creds.token_project("tok-2") is None
    assert "tok-1" not in repr(creds.tokens)  # kept by digest only


@pytest.mark.parametrize(("text", "words"), [
    ("[[access_keys]]\nak = 'A'\nsk = ''\nproject_id = 'p'\n", ["access_keys[0]", "'sk'"]),
    ("[[tokens]]\ntoken = 't'\n", ["tokens[0]", "'project_id'"]),
    ("", ["no [[access_keys]]"]),
    ("access_keys = 3\n", ["array of tables"]),
    ("[[access_keys]\n", ["not valid TOML"]),
    ("users = []\n", ["unknown key", "users"]),
    (GOOD + "\n[[access_keys]]\nak = 'AK1'\nsk = 's'\nproject_id = 'p'\n", ["AK1 appears twice"]),
])
def test_bad_files_are_refused(tmp_path: Path, text: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as exc_info:
        load_credentials(write(tmp_path, text))
    for word in words:
        assert word in str(exc_info.value)
    assert "secret-1" not in str(exc_info.value)


def test_world_readable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="chmod 600"):
        load_credentials(write(tmp_path, GOOD, 0o604))


def test_group_readable_file_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    load_credentials(write(tmp_path, GOOD, 0o640))
    assert "readable by its group" in caplog.text


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_credentials(tmp_path / "nope.toml")


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
PATH = "/v3/proj/agents/a1/add-path"
BODY = json.dumps({"add_path": ["/x"]}).encode()


def signed(ak: str = "AK1", sk: str = "secret-1", when: datetime = NOW, **extra: str) -> dict[str, str]:
    headers = {"Content-Type": "application/json;charset=utf-8", "Host": "cp:8443", **extra}
    signer.sign("POST", PATH, [], headers, BODY, ak, sk, now=when)
    return {k.lower(): v for k, v in headers.items()}


def auth(creds, headers: dict[str, str], *, project: str = "proj", body: bytes = BODY) -> None:
    authenticate(creds, method="POST", path=PATH, query=[], headers=headers, body=body,
                 project_id=project, now=NOW)


def test_signed_request_passes_and_tampering_fails(tmp_path: Path) -> None:
    creds = load_credentials(write(tmp_path, GOOD))
    auth(creds, signed())
    with pytest.raises(AuthError, match="signature does not match") as exc_info:
        auth(creds, signed(), body=BODY + b" ")
    assert exc_info.value.status == 401
    with pytest.raises(AuthError, match="signature does not match"):
        auth(creds, signed(sk="wrong"))
    with pytest.raises(AuthError, match="not known"):
        auth(creds, signed(ak="AK9"))


@pytest.mark.parametrize(("minutes", "ok"), [(14, True), (-14, True), (16, False), (-16, False)])
def test_date_must_be_within_15_minutes(tmp_path: Path, minutes: int, ok: bool) -> None:
    creds = load_credentials(write(tmp_path, GOOD))
    headers = signed(when=NOW + timedelta(minutes=minutes))
    if ok:
        auth(creds, headers)
    else:
        with pytest.raises(AuthError, match="15 minutes"):
            auth(creds, headers)


def test_host_and_date_must_be_signed(tmp_path: Path) -> None:
    creds = load_credentials(write(tmp_path, GOOD))
    headers = signed()
    headers["authorization"] = headers["authorization"].replace("SignedHeaders=content-type;host;",
                                                                "SignedHeaders=content-type;")
    with pytest.raises(AuthError, match="must include host"):
        auth(creds, headers)


def test_token_and_project(tmp_path: Path) -> None:
    creds = load_credentials(write(tmp_path, GOOD))
    auth(creds, {"x-auth-token": "tok-1"})
    with pytest.raises(AuthError) as exc_info:
        auth(creds, {"x-auth-token": "tok-1"}, project="other")
    assert exc_info.value.status == 403
    with pytest.raises(AuthError) as exc_info:
        auth(creds, signed(), project="other")
    assert exc_info.value.status == 403
    with pytest.raises(AuthError) as exc_info:
        auth(creds, {"x-auth-token": "tok-x"})
    assert exc_info.value.status == 401 and "tok-x" not in str(exc_info.value)
    with pytest.raises(AuthError, match="authentication required"):
        auth(creds, {})
    with pytest.raises(AuthError, match="malformed"):
        auth(creds, {"authorization": "SDK-HMAC-SHA256 garbage"})
