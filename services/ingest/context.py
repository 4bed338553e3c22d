"""What every ingest handler needs: the runtime, metrics, body reading and publishing."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from waveline.services.ingest.metrics import IngestMetrics
from waveline.services.ingest.responses import ApiError
from waveline.shared.errors import BrokerUnavailable
from waveline.shared.kafka import publish
from waveline.shared.runtime import Runtime

CONTEXT_KEY = web.AppKey("waveline_ingest", object)


@dataclass
class IngestContext:
    runtime: Runtime
    metrics: IngestMetrics

    @staticmethod
    def of(request: web.Request) -> IngestContext:
        ctx = request.app[CONTEXT_KEY]
        assert isinstance(ctx, IngestContext)
        return ctx

    async def read_body(self, request: web.Request) -> bytes:
        limit = self.runtime.settings.http_max_body
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, "too_large", f"body exceeds {limit} bytes")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise ApiError(413, "too_large", f"body exceeds {limit} bytes") from exc

    async def read_json_object(self, request: web.Request) -> dict[str, Any]:
        return self.parse_json_object(await self.read_body(request))

    @staticmethod
    def parse_json_object(body: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, "malformed", f"body is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ApiError(400, "malformed", "body must be a JSON object")
        return doc

    async def publish(self, message: BaseModel, topic: str, *, key: str, route: str) -> None:
        """Publish and wait for Kafka's ack; 503 when it does not come (never a lost 202)."""
        started = time.perf_counter()
        try:
            await publish(
                self.runtime.broker,
                message,
                topic,
                key=key,
                timeout_s=self.runtime.settings.publish_timeout_s,
            )
        except BrokerUnavailable as exc:
            raise ApiError(
                503, "unavailable", "Kafka did not acknowledge the event; retry"
            ) from exc
        self.metrics.accept_seconds.labels(route).observe(time.perf_counter() - started)
        self.metrics.published.labels(topic).inc()
