"""Fixtures of the API client tests: the scripted fake endpoint (see fake_cbr_endpoint.py)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.api.fake_cbr_endpoint import ScriptedServer, SleepRecorder, TlsFiles, make_tls_files


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ScriptedServer]:
    """One server for a module's hypothesis tests (each example reads its own last request)."""
    srv = ScriptedServer()
    yield srv
    srv.close()


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ScriptedServer, TlsFiles]]:
    files = make_tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.server_cert, files.server_key)
    srv = ScriptedServer(ssl_context=context)
    yield srv, files
    srv.close()
