"""``waveline run <service>|all``: run services in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from typing import Protocol

from waveline.services.git_writer.service import GitWriter
from waveline.services.ingest.server import IngestServer
from waveline.services.notifier.service import Notifier
from waveline.services.promoter.service import Promoter
from waveline.services.reconciler.service import Reconciler
from waveline.services.status_tracker.service import StatusTracker
from waveline.shared import health
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.retention import prune_forever
from waveline.shared.runtime import Runtime, bootstrap

logger = logging.getLogger(__name__)

SERVICES = ("ingest", "git-writer", "status-tracker", "promoter", "notifier", "reconciler")


class Consumer(Protocol):
    def register(self) -> None: ...


def consumer_for(name: str, runtime: Runtime) -> Consumer:
    factories: dict[
        str,
        type[GitWriter] | type[Promoter] | type[StatusTracker] | type[Notifier] | type[Reconciler],
    ]
    factories = {
        "git-writer": GitWriter,
        "promoter": Promoter,
        "status-tracker": StatusTracker,
        "notifier": Notifier,
        "reconciler": Reconciler,
    }
    return factories[name](runtime)


async def serve(
    runtime: Runtime, stop: asyncio.Event, started: asyncio.Event | None = None
) -> None:
    """Run one service on ``runtime`` until ``stop`` is set; ``started`` is set once it
    accepts work."""
    started = started or asyncio.Event()
    if runtime.service == "ingest":
        await runtime.start()
        server = IngestServer(runtime)
        await server.start()
        started.set()
        logger.info("ingest listening on %s", server.url)
        try:
            await stop.wait()
        finally:
            await server.stop()
            await runtime.stop()
        return
    consumer = consumer_for(runtime.service, runtime)
    consumer.register()
    # Up before the dependencies are: readiness then says what the service waits for.
    health_runner = await health.start(runtime, started)
    try:
        await runtime.start()
        on_started = getattr(consumer, "on_started", None)
        if on_started is not None:
            await on_started()
    except BaseException:
        if health_runner is not None:
            await health_runner.cleanup()
        raise
    started.set()
    logger.info("%s consuming", runtime.service)
    # Bounded growth: the service prunes its own tables (shared/retention.py).
    pruning = asyncio.create_task(
        prune_forever(runtime, runtime.settings.retention_interval_s),
        name=f"{runtime.service}-retention",
    )
    try:
        await stop.wait()
    finally:
        pruning.cancel()
        await asyncio.gather(pruning, return_exceptions=True)
        if health_runner is not None:
            await health_runner.cleanup()
        # Background tasks stop while the broker can still take what they publish; what
        # batches use is released once no batch runs (after_consuming).
        close = getattr(consumer, "close", None)
        if close is not None:
            closing = close()
            if inspect.isawaitable(closing):
                await closing
        await runtime.stop_consuming()
        after = getattr(consumer, "after_consuming", None)
        if after is not None:
            await after()
        await runtime.stop()


async def run_services(
    names: list[str], settings: Settings, config: WavelineConfig, secrets: Secrets
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runtimes = [bootstrap(n, settings, config, secrets) for n in names]
    tasks = [asyncio.create_task(serve(rt, stop), name=rt.service) for rt in runtimes]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
