"""A real S3-protocol server on loopback for tests, and a fault-injecting HTTP proxy in front of it.

:class:`MotoS3` is moto's S3 server (``ThreadedMotoServer``, werkzeug) on 127.0.0.1 and an ephemeral
port, in a thread of the test process; subprocesses (the CLI) reach it over TCP like any endpoint.

:class:`FaultProxy` forwards HTTP/1.1 requests to it and misbehaves on demand, as an unreliable endpoint
or a restrictive bucket policy would (the honest fake of what is outside the project):

- ``down``: every connection is closed without an answer (an endpoint that went away)
- ``slowdown(n)``: the next ``n`` requests get ``503 SlowDown`` (a throttling storm)
- ``cut_puts(n)``: the next ``n`` PUTs with a body are forwarded with only half their body, then the
  connection is dropped (an upload cut short)
- ``deny_delete``: every DELETE gets ``403 AccessDenied`` (append-only credentials)
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from moto.server import ThreadedMotoServer

ACCESS_KEY = "AKIAMOTOTESTKEY00001"
SECRET_KEY = "moto-test-secret-key-not-a-real-one"


class MotoS3:
    def __init__(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"

    def stop(self) -> None:
        self.server.stop()


def _error_body(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error>").encode()


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.down = False
        self.deny_delete = False
        self._slowdown = 0
        self._cut_puts = 0
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status answered)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "FaultProxy"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with proxy.lock:
                    proxy.requests.append((self.command, self.path, status))

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    down = proxy.down
                    slow = proxy._slowdown > 0
                    if slow:
                        proxy._slowdown -= 1
                    cut = not slow and self.command == "PUT" and length > 0 and proxy._cut_puts > 0
                    if cut:
                        proxy._cut_puts -= 1
                    deny = proxy.deny_delete and self.command == "DELETE"
                if down:
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if slow:
                    self._answer(503, _error_body("SlowDown", "Please reduce your request rate."))
                    return
                if deny:
                    self._answer(403, _error_body("AccessDenied", "Access Denied"))
                    return
                if cut:
                    self._forward_cut(body)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request(self.command, self.path, body=body if body else None, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    out = {k: v for k, v in answer.getheaders()
                           if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                                "date", "server")}
                    self._answer(answer.status, data if self.command != "HEAD" else b"", out)
                finally:
                    conn.close()

            def _forward_cut(self, body: bytes) -> None:
                """Send the upstream the headers and half the body, then hang up on both sides."""
                sock = socket.create_connection(("127.0.0.1", proxy.upstream_port), timeout=10)
                try:
                    lines = [f"{self.command} {self.path} HTTP/1.1"]
                    lines += [f"{k}: {v}" for k, v in self.headers.items()]
                    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body[: len(body) // 2])
                finally:
                    sock.close()
                with proxy.lock:
                    proxy.requests.append((self.command, self.path, 0))
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def slowdown(self, n: int) -> None:
        with self.lock:
            self._slowdown = n

    def cut_puts(self, n: int) -> None:
        with self.lock:
            self._cut_puts = n

    def count(self, method: str, status: int | None = None) -> int:
        with self.lock:
            return sum(1 for m, _p, s in self.requests if m == method and (status is None or s == status))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
