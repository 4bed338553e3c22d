"""Ingest's HTTP server: the app behind the front door, on ``WAVELINE_HTTP_HOST:PORT``.

``web.TCPSite`` would hand ``loop.create_server`` the runner's protocol factory as it is;
this server hands it the factory wrapped by ``FrontDoor`` (connection bound, head deadline).
The protocol is made with ``auto_decompress=False``: aiohttp inflates a compressed body as
it arrives, before any handler runs, so with it on, a small zip bomb costs CPU and memory
even though ``body.encodings`` answers 415. ``keepalive_timeout`` closes idle keep-alive
connections, which would otherwise hold their place under the bound for an hour.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from waveline.services.ingest.app import create_app
from waveline.services.ingest.frontdoor import FrontDoor
from waveline.services.ingest.metrics import IngestMetrics
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)


class IngestServer:
    """Serves ``runtime``'s ingest app from ``start`` until ``stop``."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        self.settings = settings
        self.metrics = IngestMetrics()
        self.front_door = FrontDoor(
            header_timeout_s=settings.http_header_timeout_s,
            max_connections=settings.http_max_connections,
            metrics=self.metrics,
        )
        self.app = create_app(runtime, metrics=self.metrics, front_door=self.front_door)
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            auto_decompress=False,
            keepalive_timeout=settings.http_idle_timeout_s,
        )
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        await self._runner.setup()
        protocol = self._runner.server
        assert protocol is not None  # set by setup()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.front_door.protocol_factory(protocol),
            self.settings.http_host,
            self.settings.http_port,
            reuse_address=True,
            backlog=min(self.settings.http_max_connections, 4096),
        )

    @property
    def port(self) -> int:
        """The bound port (the chosen one when ``WAVELINE_HTTP_PORT`` is 0)."""
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.settings.http_host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish, close every connection."""
        if self._server is not None:
            self._server.close()
        await self._runner.cleanup()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
