"""The connection layer in front of ingest's aiohttp app: a bound on open connections and a
deadline for each request's head.

aiohttp times neither: a client may take as long as it likes over its request line and
headers (only ``keepalive_timeout``, an idle timer, ever closes such a connection), and it
accepts every connection. So each connection's protocol (what ``web.AppRunner.server``
makes, the factory ``loop.create_server`` takes) is wrapped:

* past ``max_connections`` open ones, a new connection is closed at once;
* a connection must deliver a complete request head within ``header_timeout_s`` of its
  opening, and later heads within ``header_timeout_s`` of their first byte, or it is
  closed. "Complete" is when the app sees the request: ``middleware`` tells the wrapper, and
  tells it again when the handler is done. A request whose body was not all received when
  its handler returned (a refused or timed-out request) ends its connection, within the
  same deadline.

The body deadline is ``body.read_body``'s (408), and an idle keep-alive connection is
aiohttp's ``keepalive_timeout`` (set by ``server.py``). Only public API is used:
``asyncio.Protocol`` delegation, ``BaseRequest.transport`` and a middleware.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from waveline.services.ingest.metrics import IngestMetrics

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FrontDoor:
    """Wraps a protocol factory; one per listening server."""

    def __init__(
        self,
        *,
        header_timeout_s: float,
        max_connections: int,
        metrics: IngestMetrics,
    ) -> None:
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        self.metrics = metrics
        self._open: dict[asyncio.BaseTransport, _Connection] = {}
        self._full = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def protocol_factory(
        self, inner: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """What to hand ``loop.create_server`` instead of ``inner``."""
        return lambda: _Connection(self, inner)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Tells the connection its head arrived, and when the handler is done."""
        connection = self._open.get(request.transport) if request.transport else None
        if connection is None:
            return await handler(request)
        connection.head_received()
        try:
            response = await handler(request)
            if not request.content.is_eof():
                # The client may still be sending the rest of the body: end the connection
                # (request_done re-arms the deadline) rather than read it for as long as it
                # trickles in.
                response.force_close()
            return response
        finally:
            connection.request_done(body_complete=request.content.is_eof())

    def _admit(self, transport: asyncio.BaseTransport, connection: _Connection) -> bool:
        if len(self._open) >= self.max_connections:
            self.metrics.connections_refused.inc()
            if not self._full:
                self._full = True
                logger.warning(
                    "ingest: %d connections open, the limit; refusing new ones",
                    len(self._open),
                )
            return False
        self._open[transport] = connection
        self.metrics.connections_open.set(len(self._open))
        return True

    def _release(self, transport: asyncio.BaseTransport) -> None:
        if self._open.pop(transport, None) is None:
            return
        self.metrics.connections_open.set(len(self._open))
        # Logged once well under the bound, so a door held at the bound by a flood of
        # connections does not log a pair of lines per connection.
        if self._full and len(self._open) <= self.max_connections * 9 // 10:
            self._full = False
            logger.info("ingest: %d connections open, accepting new ones again", len(self._open))


class _Connection(asyncio.Protocol):
    """Delegates every event to aiohttp's protocol, timing the heads."""

    def __init__(self, door: FrontDoor, inner: Callable[[], asyncio.Protocol]) -> None:
        self._door = door
        self._inner_factory = inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.BaseTransport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        if not self._door._admit(transport, self):
            transport.close()  # no protocol of aiohttp's is ever made for it
            return
        self._inner = self._inner_factory()
        self._arm()
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._transport is not None:
            self._door._release(self._transport)
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if not self._in_request and self._deadline is None:
            self._arm()  # the first byte of a head
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def head_received(self) -> None:
        self._in_request = True
        self._disarm()

    def request_done(self, *, body_complete: bool) -> None:
        self._in_request = False
        if not body_complete:
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._door.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._transport is not None and not self._transport.is_closing():
            self._door.metrics.head_timeouts.inc()
            self._transport.close()
