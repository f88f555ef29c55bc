"""A small honest fake of the CBR endpoint: a real HTTP(S) server on 127.0.0.1 in a thread.

It records every request exactly as received (raw path, raw query, headers, body bytes), checks an
AK/SK signature with :func:`cbr_agent.api.signer.verify` on those received bytes, and answers from a
script of :class:`Reply` objects (then ``200 {}`` once the script is used up). A reply can stall (to
provoke a read timeout) or drop the connection without answering.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from cbr_agent.api import signer

PROJECT_ID = "f841e01fd2b14e7fa41b6ae7aa6b0594"
AK = "HPUAEXAMPLEAK0000001"
SK = "ExampleSecretKey00000000000000000000SK01"
TOKEN = "MIIExampleTokenValue-do-not-log"


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list: sent as JSON; bytes: sent as is; None: empty
    headers: dict[str, str] = field(default_factory=dict)
    stall: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection without any answer


@dataclass
class Received:
    method: str
    raw_path: str  # the path as on the request line, still percent-encoded, no query
    raw_query: str
    headers: dict[str, str]
    body: bytes
    client_port: int
    signature_ok: bool | None  # None: the request carried no Authorization header

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return parse_qsl(self.raw_query, keep_blank_values=True, strict_parsing=False)

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def signed_headers(self) -> tuple[str, ...]:
        auth = self.header("Authorization")
        return signer.parse_authorization(auth).signed_headers if auth else ()


class ScriptedServer:
    def __init__(self, ssl_context: ssl.SSLContext | None = None, secret_key: str = SK) -> None:
        self.secret_key = secret_key
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        self.released = threading.Event()  # set at close: stalled handlers stop waiting
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client that hung up is fine
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def next_reply(self) -> Reply:
        with self._lock:
            return self.replies.popleft() if self.replies else Reply(200, {})

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    @property
    def last(self) -> Received:
        return self.received[-1]

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


def check_signature(method: str, raw_path: str, raw_query: str, headers: dict[str, str], body: bytes,
                    secret_key: str) -> bool | None:
    """What a real server does: rebuild the canonical request from the received bytes."""
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if value is None:
        return None
    try:
        auth = signer.parse_authorization(value)
    except ValueError:
        return False
    if not {"host", "x-sdk-date"} <= set(auth.signed_headers):
        return False
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    return signer.verify(method, raw_path, pairs, headers, body, auth, secret_key)


def _handler_for(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = -1  # headers and body in one send: no Nagle/delayed-ACK stall of 40 ms per answer

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            raw_path, _, raw_query = self.path.partition("?")
            headers = dict(self.headers.items())
            server.record(Received(
                self.command, raw_path, raw_query, headers, body, self.client_address[1],
                check_signature(self.command, raw_path, raw_query, headers, body, server.secret_key)))
            reply = server.next_reply()
            if reply.stall:
                server.released.wait(reply.stall)
            if reply.drop:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if isinstance(reply.body, (dict, list)):
                payload = json.dumps(reply.body).encode()
            else:
                payload = reply.body or b""
            with contextlib.suppress(OSError):
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


class SleepRecorder:
    """The injected ``sleep``: records what the client asked for and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


# --- TLS material ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A private CA and a server certificate it signed for 127.0.0.1 (made with ``cryptography``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cbr-agent test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return files


def unquote_segments(raw_path: str) -> list[str]:
    return [unquote(s) for s in raw_path.split("/")]
