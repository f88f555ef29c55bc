"""Shared fixtures for integration tests: a real ``cbr-agent server`` on loopback.

``cp_server``
    A control-plane server started as a real subprocess (``python -m cbr_agent server``) on a free
    127.0.0.1 port, with a fresh SQLite database and a fresh credentials file in ``tmp_path``. The
    fixture waits until the server answers HTTP and stops it (SIGTERM, then SIGKILL) at teardown.
    The yielded :class:`ServerProcess` has:

    - ``url``               ``http://127.0.0.1:PORT`` (the endpoint to give a client; ``https://`` when
      started with ``extra_args=["--tls-cert", CERT, "--tls-key", KEY]``)
    - ``project_id``        the project its credentials are for
    - ``ak``, ``sk``        an access key pair for that project
    - ``token``             an ``X-Auth-Token`` for that project
    - ``other_project_id``, ``other_ak``, ``other_sk``, ``other_token``: a second project's
      credentials (a request using them on ``project_id``'s URLs gets 403)
    - ``db_path``, ``credentials_path``, ``log_path`` (the server's stdout+stderr)
    - ``stale_after``       seconds of silence after which an agent is reported ``abnormal``
    - ``stop()``            SIGTERM and wait; returns the exit code
    - ``start()``           (re)start on the same port, database and credentials
    - ``client(**kw)``      ``cbr_agent.api.client.HttpControlPlane(url, project_id, ak=ak, sk=sk, **kw)``
    - ``token_client(**kw)`` the same with ``token=`` instead of AK/SK
    - ``log_text()``        what the server logged so far

``cp_server_factory(stale_after=180.0, extra_args=())``
    Starts another server with those settings (each in its own directory); all are stopped at
    teardown. Use it for a short ``stale_after``:  ``server = cp_server_factory(stale_after=1.0)``.

``cp_server_module``
    One server shared by the tests of a module (faster); use unique agent ids in such tests.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_credentials(path: Path, entries: dict[str, Any]) -> None:
    """Write a credentials TOML file readable by its owner only."""
    lines: list[str] = []
    for ak, sk, project in entries["access_keys"]:
        lines += ["[[access_keys]]", f'ak = "{ak}"', f'sk = "{sk}"', f'project_id = "{project}"', ""]
    for token, project in entries["tokens"]:
        lines += ["[[tokens]]", f'token = "{token}"', f'project_id = "{project}"', ""]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))


class ServerProcess:
    """A ``cbr-agent server`` subprocess on loopback; see the module docstring."""

    def __init__(self, directory: Path, *, stale_after: float = 180.0, extra_args: Sequence[str] = (),
                 db: str | None = None):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.stale_after = stale_after
        self.extra_args = tuple(extra_args)
        self.port = free_port()
        self.tls = "--tls-cert" in self.extra_args
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self.project_id = uuid.uuid4().hex
        self.ak = "AK" + secrets.token_hex(9).upper()
        self.sk = secrets.token_urlsafe(30)
        self.token = "tok-" + secrets.token_urlsafe(24)
        self.other_project_id = uuid.uuid4().hex
        self.other_ak = "AK" + secrets.token_hex(9).upper()
        self.other_sk = secrets.token_urlsafe(30)
        self.other_token = "tok-" + secrets.token_urlsafe(24)
        self.db_path = directory / "controlplane.db"
        #: what --db gets: the SQLite file, or a PostgreSQL URL
        self.db = db or str(self.db_path)
        self.credentials_path = directory / "credentials.toml"
        self.log_path = directory / "server.log"
        write_credentials(self.credentials_path, {
            "access_keys": [(self.ak, self.sk, self.project_id),
                            (self.other_ak, self.other_sk, self.other_project_id)],
            "tokens": [(self.token, self.project_id), (self.other_token, self.other_project_id)],
        })
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "cbr_agent", "server",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--db", self.db, "--credentials", str(self.credentials_path),
            "--stale-after", str(self.stale_after), *self.extra_args,
        ]

    def start(self) -> ServerProcess:
        """Start (or restart) the server. On the very first start a port taken meanwhile by another
        process is replaced by a new free one; a restart keeps its port."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("server already running")
        first_start = self.process is None
        for _attempt in range(3):
            log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
            try:
                self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL)
            finally:
                log.close()
            try:
                self._wait_ready()
                return self
            except RuntimeError:
                if not (first_start and "cannot listen" in self.log_text()):
                    raise
                self.port = free_port()
                self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        raise RuntimeError(f"no free port found:\n{self.log_text()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_text()}")
            if self.answers():
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not answer within {START_TIMEOUT} s:\n{self.log_text()}")

    def answers(self) -> bool:
        """True when the server answers an HTTP request (any status)."""
        conn: http.client.HTTPConnection
        if self.tls:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2,
                                               context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop within ``timeout``. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_text(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        return ""

    def client(self, **kwargs: Any) -> Any:
        from cbr_agent.api.client import HttpControlPlane

        return HttpControlPlane(self.url, self.project_id, ak=self.ak, sk=self.sk, **kwargs)

    def token_client(self, **kwargs: Any) -> Any:
        from cbr_agent.api.client import HttpControlPlane

        return HttpControlPlane(self.url, self.project_id, token=self.token, **kwargs)


@pytest.fixture
def cp_server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def factory(*, stale_after: float = 180.0, extra_args: Sequence[str] = (),
                db: str | None = None) -> ServerProcess:
        server = ServerProcess(tmp_path / f"cp-server-{len(started)}", stale_after=stale_after,
                               extra_args=extra_args, db=db)
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def cp_server(cp_server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return cp_server_factory()


@pytest.fixture(scope="module")
def cp_server_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("cp-server-module"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cp_server_module_pg(tmp_path_factory: pytest.TempPathFactory, postgres: Any) -> Iterator[ServerProcess]:
    """As ``cp_server_module``, on a fresh PostgreSQL database of the session's cluster."""
    server = ServerProcess(tmp_path_factory.mktemp("cp-server-module-pg"), db=postgres.new_database())
    server.start()
    yield server
    server.stop()
