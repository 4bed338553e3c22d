"""What every ingest handler needs: the runtime, metrics and publishing (bodies: body.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

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
