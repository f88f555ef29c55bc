"""A real S3-protocol server on loopback for tests, and a fault-injecting HTTP proxy in front of it.

:class:`MotoS3` is moto's S3 server (``ThreadedMotoServer``, werkzeug) on 127.0.0.1 and an ephemeral
port, in a thread of the test process; subprocesses (the CLI) reach it over TCP like any endpoint.

:class:`FaultProxy` forwards HTTP/1.1 requests to it and misbehaves on demand, as an unreliable endpoint
or a restrictive bucket policy would (the honest fake of what is outside the project):

``proxy.add(action, method=None, match="", skip=0, count=None)`` adds a rule: the requests of that method
whose path contains ``match``, after the first ``skip`` of them, ``count`` of them (None: all) get

- ``down``: the connection is closed without an answer (an endpoint that went away)
- ``slowdown``: ``503 SlowDown`` (a throttling storm)
- ``cut``: (PUT) forwarded with only half its body, then both connections dropped (an upload cut short)
- ``deny``: ``403 AccessDenied`` (a bucket policy that refuses, e.g. DELETE for append-only credentials)
- ``badkey``: ``403 InvalidAccessKeyId`` (credentials the endpoint does not know)
- ``kill``: this request and every later one are hung up (the endpoint went down for good)
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from moto.server import ThreadedMotoServer

ACCESS_KEY = "AKIAMOTOTESTKEY00001"
SECRET_KEY = "moto-test-secret-key-not-a-real-one"


class MotoS3:
    def __init__(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
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


@dataclass
class Rule:
    action: str
    method: str | None = None
    match: str = ""
    skip: int = 0
    count: int | None = None
    hits: int = 0

    def take(self, method: str, path: str) -> bool:
        if (self.method and method != self.method) or self.match not in path:
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.count is not None:
            if self.count <= 0:
                return False
            self.count -= 1
        self.hits += 1
        return True


ANSWERS = {
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "deny": (403, "AccessDenied", "Access Denied"),
    "badkey": (403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist."),
    # as S3 answers for a bucket of another region (botocore follows it once, to the same endpoint here)
    "redirect": (301, "PermanentRedirect", "The bucket you are attempting to access must be addressed "
                 "using the specified endpoint."),
}
HEADERS = {"redirect": {"x-amz-bucket-region": "eu-west-1"}}


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rules: list[Rule] = []
        self.down = False  # set by a "kill" rule: every request is hung up
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status answered; 0 = none)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "FaultProxy"

            def log_message(self, *args: object) -> None:
                pass

            def _record(self, status: int) -> None:
                with proxy.lock:
                    proxy.requests.append((self.command, self.path, status))

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self._record(status)

            def _hang_up(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                self._record(0)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = proxy._action(self.command, self.path)
                if action == "down":
                    self._hang_up()
                elif action in ANSWERS:
                    status, code, message = ANSWERS[action]
                    self._answer(status, _error_body(code, message),
                                 {"Content-Type": "application/xml", **HEADERS.get(action, {})})
                elif action == "cut" and body:
                    self._forward_cut(body)
                else:
                    self._forward(body)

            def _forward(self, body: bytes) -> None:
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    conn.request(self.command, self.path, body=body if body else None, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                    out = {k: v for k, v in answer.getheaders()
                           if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                                "date", "server")}
                    if self.command == "HEAD":
                        out["Content-Length"] = answer.getheader("Content-Length") or "0"
                        self.send_response(answer.status)
                        for k, v in out.items():
                            self.send_header(k, v)
                        self.end_headers()
                        self._record(answer.status)
                        return
                    self._answer(answer.status, data, out)
                finally:
                    conn.close()

            def _forward_cut(self, body: bytes) -> None:
                """Send the upstream the headers and half the body, then hang up on both sides."""
                sock = socket.create_connection(("127.0.0.1", proxy.upstream_port), timeout=10)
                try:
                    lines = [f"{self.command} {self.path} HTTP/1.1"]
                    lines += [f"{k}: {v}" for k, v in self.headers.items()]
                    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
                    sock.sendall(head + body[: len(body) // 2])
                finally:
                    sock.close()
                self._hang_up()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, action: str, *, method: str | None = None, match: str = "", skip: int = 0,
            count: int | None = None) -> Rule:
        if action not in ("down", "cut", "kill", *ANSWERS):
            raise ValueError(action)
        rule = Rule(action, method, match, skip, count)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """No more faults: the endpoint is back."""
        with self.lock:
            self.rules.clear()
            self.down = False

    def _action(self, method: str, path: str) -> str | None:
        with self.lock:
            if self.down:
                return "down"
            for rule in self.rules:
                if rule.take(method, path):
                    if rule.action == "kill":
                        self.down = True
                        return "down"
                    return rule.action
        return None

    def count(self, method: str, status: int | None = None, match: str = "") -> int:
        with self.lock:
            return sum(1 for m, p, s in self.requests
                       if m == method and (status is None or s == status) and match in p)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
