"""How the HTTP server runs: the uvicorn options that `fashion-search serve` passes, in one place, and the
HTTP/1.1 protocol that closes connections whose request head never completes (uvicorn has no such
timeout: a socket that sends half a request line stays open until the client goes)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from search.settings import Settings


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout: the request head (request line and headers) must be
    complete within `header_timeout_s` of the connection opening, or of the previous response ending;
    otherwise the connection is closed, without an answer (there is no request to answer). The keep-alive
    timeout still closes an idle connection sooner; this one bounds a client that trickles bytes, which
    uvicorn's keep-alive timer forgets as soon as any byte arrives. A subclass per server sets the value."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a new request head was parsed: its cycle has begun
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._start_header_timer()  # for the next request (super() may parse a pipelined one at once)
        super().on_response_complete()

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn logs two warnings for every request that asks to upgrade (we serve no websockets), which
        # would let any client write to the log at will; the request is answered as plain HTTP.
        self.logger.debug("unsupported upgrade request answered as plain HTTP")

    def _start_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        try:
            self.conn.send(h11.ConnectionClosed())
        except h11.LocalProtocolError:
            pass  # h11 is mid-message (a body still arriving after an early answer): close all the same
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run(app, ...)`."""
    timeout = {"header_timeout_s": settings.header_timeout_s}
    protocol = type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), timeout)
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "lifespan": "on",
        # On SIGTERM uvicorn stops accepting, lets in-flight requests finish for this long, then cuts the
        # rest (a slow client must not hold a rolling update). It takes whole seconds.
        "timeout_graceful_shutdown": math.ceil(settings.shutdown_timeout_s),
        # Connections: HTTP/1.1 over h11 with a header timeout; an idle keep-alive connection closes after
        # keep_alive_timeout_s; at max_connections open connections (or requests in progress) a new
        # request gets 503 at once rather than a slow answer; the kernel queues listen_backlog connections
        # not yet accepted; a request head over max_header_bytes is a 400.
        "http": protocol,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "limit_concurrency": settings.max_connections,
        "backlog": settings.listen_backlog,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        # request.client is the TCP peer: service/access.py decides which proxies' X-Forwarded-For to trust.
        "proxy_headers": False,
        "ws": "none",  # no websockets here (upgrade requests: see HeaderTimeoutProtocol)
        "server_header": False,  # no "server: uvicorn" on every answer
        "date_header": True,  # RFC 9110: an origin server with a clock sends Date
    }
