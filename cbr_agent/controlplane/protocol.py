"""uvicorn's HTTP protocol with the read timeouts and the connection cap it lacks.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``), but a connection that sends
part of a request header, or a header and then only part of its body, is held for ever: a thousand
such connections (a "slowloris") cost a thousand file descriptors, and more exhaust the process.
:func:`guarded_protocol` makes a subclass of uvicorn's httptools protocol that

- closes a connection whose request header is not complete within ``read_timeout`` seconds of the
  connection being accepted, or of the first byte of a following request on a kept-alive connection
  (a deadline, not an idle time: trickling a byte now and then does not extend it);
- closes a connection that sends no body byte for ``read_timeout`` seconds while a body is due;
- answers 408 with the project's error body before closing, when no response has begun;
- answers 431 and closes when a request's line and headers pass :data:`MAX_HEADER_BYTES` (uvicorn
  keeps every header line in memory: a single connection sending small header lines for ten seconds
  made the server grow by 1.4 GB);
- answers 503 (``Retry-After``) to requests arriving while more than ``max_connections`` connections
  are open, instead of uvicorn's plain-text 503, and closes that connection.

Reading paused by flow control (the application is busy with earlier bytes) never counts against the
client. The hooks are httptools' parser callbacks, which uvicorn's protocol already implements.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cbr_agent.controlplane import faults

log = logging.getLogger("cbr_agent.controlplane.server")

#: request line and headers of one request, at most (the SDK sends well under 2 KiB)
MAX_HEADER_BYTES = 64 * 1024


def _error_bytes(status: int, reason: str, error: Any) -> bytes:
    body = json.dumps(error.to_body(), separators=(",", ":")).encode("utf-8")
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode("ascii") + body


def _refusal(error: Any, *headers: tuple[bytes, bytes]) -> Any:
    """An ASGI application that answers ``error`` and closes the connection."""
    body = json.dumps(error.to_body(), separators=(",", ":")).encode("utf-8")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": error.status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *headers, (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    return app


_overloaded = _refusal(faults.overloaded(), (b"retry-after", b"1"))
_header_too_large = _refusal(faults.header_too_large(MAX_HEADER_BYTES))


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """See the module docstring; ``read_timeout`` and ``max_connections`` are set by the subclass
    :func:`guarded_protocol` makes."""

    read_timeout: float = 10.0
    max_connections: int = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._real_app = self.app
        self.limit_concurrency = None  # the cap is ours (with the project's error body)
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting = ""  # "header" or "body": what the running timer waits for
        self._header_bytes = 0  # received while a header is awaited

    # -- timers -----------------------------------------------------------------------------------

    def _arm(self, awaiting: str) -> None:
        self._disarm()
        self._awaiting = awaiting
        if awaiting == "header":
            self._header_bytes = 0
        self._deadline = self.loop.call_later(self.read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._awaiting = ""

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:
            # not the client's fault: we stopped reading (pipelining, or a body not consumed yet)
            self._arm(self._awaiting)
            return
        log.debug("closing connection from %s: no complete request %s within %gs", self.client,
                  self._awaiting, self.read_timeout)
        if self._awaiting == "header":  # self.cycle is the previous request's, if any
            answer = self.cycle is None or self.cycle.response_complete
        else:  # a body withheld after its request was answered (413, 404) just ends the connection
            answer = self.cycle is not None and not self.cycle.response_started
        if answer:
            self.transport.write(_error_bytes(408, "Request Timeout", faults.request_timeout(
                self._awaiting, self.read_timeout)))
        self.transport.close()

    # -- connection and parser callbacks (uvicorn's, extended) -------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("header")

    def data_received(self, data: bytes) -> None:
        if self._awaiting == "header":
            self._header_bytes += len(data)
        super().data_received(data)
        # still no end of header after this many bytes: refuse before it grows any further
        if self._awaiting == "header" and self._header_bytes > MAX_HEADER_BYTES \
                and not self.transport.is_closing():
            log.debug("closing connection from %s: request header over %d bytes", self.client,
                      MAX_HEADER_BYTES)
            self._disarm()
            self.transport.write(_error_bytes(431, "Request Header Fields Too Large",
                                              faults.header_too_large(MAX_HEADER_BYTES)))
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._awaiting != "header":  # the first byte of a request on a kept-alive connection
            self._arm("header")

    def on_headers_complete(self) -> None:
        header_size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if header_size > MAX_HEADER_BYTES:
            self.app = _header_too_large
        elif len(self.connections) > self.max_connections:
            log.warning("%d connections open (more than --max-connections %d): answering 503",
                        len(self.connections), self.max_connections)
            self.app = _overloaded
        else:
            self.app = self._real_app
        self._arm("body")  # cancelled at once by on_message_complete when there is no body
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._arm("body")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def guarded_protocol(read_timeout: float, max_connections: int) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"read_timeout": read_timeout, "max_connections": max_connections})
