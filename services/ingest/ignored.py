"""Deliveries that change nothing, told: answered with the reason (``ignore_rules``),
logged once per cause, counted in ``waveline_deliveries_ignored_total{route, reason}`` and
recorded per repository and reason for ``waveline status`` (``ignored_store``).

A flood of one cause writes its row at most once per ``RECORD_EVERY_S`` per process: each
write of a hot row would otherwise queue behind the previous one's lock.
"""

from __future__ import annotations

import logging
import time
import weakref
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from waveline.services.ingest import ignored_store
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.ignore_rules import CauseLog, Ignored

logger = logging.getLogger(__name__)

RECORD_EVERY_S = 1.0
# Bounds the throttle's memory like the cause log's.
_RECORDED_LIMIT = 10_000


class IgnoredDeliveries:
    """One ingest app's metric, cause log and write throttle."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "waveline_deliveries_ignored",
            "Deliveries that changed nothing, by route and reason (sha_not_on_auto: published"
            " all the same, in case the commit is recorded after its check)",
            ["route", "reason"],
            registry=registry,
        )
        self.causes = CauseLog()
        self._recorded: dict[tuple[str, ...], float] = {}

    def due(self, ignored: Ignored) -> bool:
        """Whether ``ignored``'s row should be written now (throttled per cause)."""
        key = (ignored.repo or ignored.forge_name or "", ignored.reason)
        now = time.monotonic()
        if now - self._recorded.get(key, -RECORD_EVERY_S) < RECORD_EVERY_S:
            return False
        if len(self._recorded) >= _RECORDED_LIMIT:
            self._recorded.clear()
        self._recorded[key] = now
        return True


# Keyed by the app's metrics registry, so each app (tests build many) has its own counter.
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, IgnoredDeliveries] = (
    weakref.WeakKeyDictionary()
)


def of(ctx: IngestContext) -> IgnoredDeliveries:
    registry = ctx.metrics.registry
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = IgnoredDeliveries(registry)
    return found


async def tell(ctx: IngestContext, ignored: Ignored, event: str, *, route: str) -> dict[str, Any]:
    """Count, log (once per cause) and record ``ignored``; the answer's fields."""
    state = of(ctx)
    state.counter.labels(route, ignored.reason).inc()
    if state.causes.first((route, *ignored.cause)):
        log = logger.warning if ignored.fix else logger.info
        log(
            "%s delivery %s ignored (%s): %s%s",
            route,
            event[:64],
            ignored.reason,
            ignored.detail,
            f"; fix: {ignored.fix}" if ignored.fix else "",
        )
    if ignored.recorded and state.due(ignored):
        await ignored_store.record(ctx.runtime.pool, ignored, event)
    return ignored.answer()


async def answer(ctx: IngestContext, ignored: Ignored, event: str, *, route: str) -> web.Response:
    """200 with why ``ignored`` changed nothing (a 2xx: the sender must not retry it)."""
    return web.json_response(await tell(ctx, ignored, event, route=route), status=200)
