"""DORA metrics inside the promoter (docs/dora.md): the facts no table kept, and ``/metrics``.

``attach(runtime)`` subscribes, in consumer groups of their own (``waveline-dora``), to
``waveline.images`` (the app commit time CI sent) and ``waveline.waves`` (every wave status),
stored by ``shared/dora_store.py``; and registers a collector on the service's registry
whose numbers (the last ``WINDOW``) are recomputed in the background when a scrape or a
stored wave status finds them older than ``REFRESH_S`` (``STALE_REFRESH_S`` after a new
wave status; never more often than ``COST_FACTOR`` times the last computation took): a
scrape never waits on the database, and shows the last numbers computed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TypeVar

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ValidationError

from waveline.shared import dora_store
from waveline.shared.dora import PipelineDora, compute
from waveline.shared.models.base import utcnow
from waveline.shared.models.images import AnnouncedCommit
from waveline.shared.models.waves import WaveStatus
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

WINDOW = timedelta(days=30)
REFRESH_S = 30.0
# A new wave status makes the numbers stale at once; recomputed at most this often then,
# and never more often than COST_FACTOR times the last computation took: the window's facts
# grow with traffic (at 100 image sets/s, recomputing every second took a seventh of the
# promoter's CPU), so the metrics' freshness gives way before the promoter's work does.
STALE_REFRESH_S = 1.0
COST_FACTOR = 50.0
GROUP = "waveline-dora"
M = TypeVar("M", bound=BaseModel)


def families(numbers: list[PipelineDora]) -> list[GaugeMetricFamily]:
    """The metric families of computed numbers (names in docs/dora.md)."""
    window = f" over the last {WINDOW.days} days"

    def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"waveline_dora_{name}", doc + window, labels=labels)

    deployments = gauge("deployments", "deployments into each wave", ["pipeline", "wave"])
    frequency = gauge(
        "deployments_per_day",
        "deployment frequency per wave (the last wave's is the pipeline's)",
        ["pipeline", "wave"],
    )
    lead = gauge(
        "lead_time_seconds",
        "lead time for changes, app commit (or announcement) to the last wave",
        ["pipeline", "quantile"],
    )
    rate = gauge("change_failure_rate", "failed changes over deployments", ["pipeline"])
    wave_rate = gauge(
        "wave_change_failure_rate", "failed changes over deployments", ["pipeline", "wave"]
    )
    restore = gauge(
        "time_to_restore_seconds",
        "time from a failed wave to it running a set again",
        ["pipeline", "quantile"],
    )
    open_failures = gauge("open_failures", "waves failed and not restored", ["pipeline"])
    failures = gauge("failures", "failure facts by kind", ["pipeline", "kind"])
    for p in numbers:
        for w in p.waves:
            deployments.add_metric([p.pipeline, w.wave], w.deployments)
            frequency.add_metric([p.pipeline, w.wave], w.deployments_per_day)
            if w.change_failure_rate is not None:
                wave_rate.add_metric([p.pipeline, w.wave], w.change_failure_rate)
        for quantile, value in (("0.5", p.lead_time.median_s), ("0.9", p.lead_time.p90_s)):
            if value is not None:
                lead.add_metric([p.pipeline, quantile], value)
        for quantile, value in (
            ("0.5", p.time_to_restore.median_s),
            ("0.9", p.time_to_restore.p90_s),
        ):
            if value is not None:
                restore.add_metric([p.pipeline, quantile], value)
        if p.change_failure_rate is not None:
            rate.add_metric([p.pipeline], p.change_failure_rate)
        open_failures.add_metric([p.pipeline], p.open_failures)
        for kind, count in p.failures_by_kind.items():
            failures.add_metric([p.pipeline, kind], count)
    return [deployments, frequency, lead, rate, wave_rate, restore, open_failures, failures]


class DoraCollector(Collector):
    """The last computed numbers; a stale cache schedules a recomputation."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.numbers: list[PipelineDora] = []
        self._computed_at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self.stale = False
        self._took = 0.0  # how long the last computation took (s)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.refresh_soon()
        yield from families(self.numbers)

    def refresh_soon(self) -> None:
        """Recompute in the background when the numbers are older than ``REFRESH_S`` (than
        ``STALE_REFRESH_S`` once a new wave status was stored)."""
        age = time.monotonic() - self._computed_at
        least = COST_FACTOR * self._took
        if age < max(least, STALE_REFRESH_S if self.stale else REFRESH_S):
            return
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # scraped from another thread: the next scrape in the loop will
        self._task = loop.create_task(self.refresh(), name="dora-refresh")

    async def refresh(self) -> None:
        try:
            pipelines = {
                n: [w.name for w in p.waves] for n, p in self.runtime.config.pipelines.items()
            }
            self.stale = False
            until, started = utcnow(), time.monotonic()
            facts = await dora_store.load_facts(self.runtime.pool, list(pipelines), until)
            self.numbers = compute(facts, pipelines, until - WINDOW, until)
            self._computed_at = time.monotonic()
            self._took = self._computed_at - started
        except Exception:
            logger.exception("dora: computing the metrics failed; trying again on next scrape")


def _lenient(model: type[M]) -> Callable[[bytes], M | None]:
    """A message the service's own consumer refuses is its to dead-letter: here, skipped."""

    def parse(body: bytes) -> M | None:
        try:
            return model.model_validate_json(body)
        except ValidationError:
            return None

    return parse


def attach(runtime: Runtime) -> DoraCollector:
    """Subscribe the DORA feed and register its collector (call in ``register``)."""
    collector = DoraCollector(runtime)

    async def on_images(batch: list[AnnouncedCommit | None]) -> None:
        await dora_store.record_commit_times(runtime.pool, [a for a in batch if a is not None])

    async def on_waves(batch: list[WaveStatus | None]) -> None:
        await dora_store.record_wave_statuses(runtime.pool, [s for s in batch if s is not None])
        collector.stale = True
        collector.refresh_soon()

    runtime.consume_batch(
        runtime.topics.images,
        GROUP,
        _lenient(AnnouncedCommit),
        on_images,
        title="DORA: app commit times",
        batched=True,
    )
    runtime.consume_batch(
        runtime.topics.waves,
        GROUP,
        _lenient(WaveStatus),
        on_waves,
        title="DORA: wave history",
        batched=True,
    )
    runtime.waits.registry.register(collector)
    return collector
