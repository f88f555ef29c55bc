"""TLS: verification is on by default; a private CA is trusted only when passed, or with verify=False."""

from __future__ import annotations

import pytest
from urllib3.exceptions import InsecureRequestWarning

from cbr_agent.api.client import HttpControlPlane
from cbr_agent.errors import ControlPlaneUnavailable
from tests.unit.api.fake_cbr_endpoint import (
    AK,
    PROJECT_ID,
    SK,
    Reply,
    ScriptedServer,
    SleepRecorder,
    TlsFiles,
)

AGENT = {"agent": {"agent_id": "a1"}}


def test_an_untrusted_certificate_is_refused_by_default_and_not_retried(
        tls_server: tuple[ScriptedServer, TlsFiles], sleeps: SleepRecorder) -> None:
    server, _ = tls_server
    with HttpControlPlane(server.url, PROJECT_ID, ak=AK, sk=SK, sleep=sleeps) as client, \
            pytest.raises(ControlPlaneUnavailable) as info:
        client.show_agent("a1")
    message = str(info.value)
    assert "certificate verify failed" in message and server.url in message
    assert "ca_bundle" in message  # says what to do
    assert server.received == [] and sleeps.calls == []  # nothing sent, a certificate does not heal


def test_the_private_ca_passed_as_verify_is_trusted(tls_server: tuple[ScriptedServer, TlsFiles]) -> None:
    server, files = tls_server
    server.script(Reply(200, AGENT))
    with HttpControlPlane(server.url, PROJECT_ID, ak=AK, sk=SK, verify=str(files.ca_cert)) as client:
        assert client.show_agent("a1").agent_id == "a1"
    assert server.last.signature_ok is True


def test_verification_can_be_turned_off_explicitly(tls_server: tuple[ScriptedServer, TlsFiles]) -> None:
    server, _ = tls_server
    server.script(Reply(200, AGENT))
    with HttpControlPlane(server.url, PROJECT_ID, ak=AK, sk=SK, verify=False) as client, \
            pytest.warns(InsecureRequestWarning):
        assert client.show_agent("a1").agent_id == "a1"


def test_another_ca_does_not_make_the_certificate_trusted(tls_server: tuple[ScriptedServer, TlsFiles],
                                                          tmp_path) -> None:
    from tests.unit.api.fake_cbr_endpoint import make_tls_files

    server, _ = tls_server
    (tmp_path / "other").mkdir()
    other = make_tls_files(tmp_path / "other")
    with HttpControlPlane(server.url, PROJECT_ID, ak=AK, sk=SK, verify=str(other.ca_cert),
                          sleep=lambda s: None) as client, \
            pytest.raises(ControlPlaneUnavailable, match="certificate verify failed"):
        client.show_agent("a1")
