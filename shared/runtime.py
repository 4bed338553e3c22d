"""``bootstrap()``: load config once and wire the dependencies every service shares.

Services receive a ``Runtime`` and never read the environment themselves. The broker is
built at bootstrap (so subscribers can be registered and documented before connecting);
the Postgres pool opens in ``start()``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import BaseModel

from waveline.shared.boundary import Boundary
from waveline.shared.config import Secrets, Settings, WavelineConfig, load_config, load_settings
from waveline.shared.db import create_pool
from waveline.shared.kafka import make_broker, publish
from waveline.shared.topics import Topics

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Runtime:
    service: str
    settings: Settings
    config: WavelineConfig
    secrets: Secrets
    broker: KafkaBroker
    topics: Topics
    _pool: asyncpg.Pool | None = field(default=None, repr=False)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.service}: Postgres pool used before start()")
        return self._pool

    def group(self, name: str, topic: str | None = None) -> str:
        """The consumer group of service group ``name`` reading ``topic``.

        One group per (service, topic): consumers of different topics in one group would
        rebalance each other on every join, which made a six-topic service take ~16 s to
        start."""
        prefix = self.settings.group_prefix
        if topic is None:
            return f"{prefix}{name}"
        return f"{prefix}{name}.{topic.removeprefix(self.settings.topic_prefix)}"

    def boundary(self) -> Boundary:
        return Boundary(
            broker=self.broker,
            dlq_topic=self.topics.dlq,
            service=self.service,
            publish_timeout_s=self.settings.publish_timeout_s,
        )

    def consume(
        self,
        topic: str,
        group: str,
        parse: Callable[[bytes], T],
        handle: Callable[[T], Awaitable[None]],
        *,
        title: str,
    ) -> None:
        """Subscribe ``handle`` to ``topic`` in consumer group ``group``, through the handler
        boundary (parse, retry, dead letter). The offset is committed after ``handle``
        returned; an error that escapes the boundary leaves it uncommitted (redelivery).

        Messages are polled in batches and handled one after the other in partition order,
        with one offset commit per batch: per-message polling and commits cost more CPU (in
        the service and in Kafka) than the handlers themselves. Handlers are idempotent, so
        a batch redelivered after a failure is safe."""

        async def in_order(values: list[T]) -> None:
            for value in values:
                await handle(value)

        self.consume_batch(topic, group, parse, in_order, title=title)

    def consume_batch(
        self,
        topic: str,
        group: str,
        parse: Callable[[bytes], T],
        handle_many: Callable[[list[T]], Awaitable[None]],
        *,
        title: str,
        max_records: int = 200,
    ) -> None:
        """``consume`` for handlers that do one round trip for many messages: whatever
        arrived together (up to ``max_records``) is handled in one call, through
        ``Boundary.run_batch``; offsets are committed after it returned."""
        boundary = self.boundary()

        @self.broker.subscriber(
            topic,
            group_id=self.group(group, topic),
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            batch=True,
            max_records=max_records,
            # Only bounds an empty poll: records already fetched are returned at once.
            batch_timeout_ms=10,
            title=title,
        )
        async def on_batch(msg: KafkaMessage) -> None:
            raw = msg.raw_message
            records = raw if isinstance(raw, tuple) else (raw,)
            await boundary.run_batch([(r, r.value or b"") for r in records], parse, handle_many)

    async def publish(self, message: BaseModel, topic: str, *, key: str) -> None:
        """Publish and wait for Kafka's acknowledgement (``BrokerUnavailable`` otherwise)."""
        await publish(
            self.broker, message, topic, key=key, timeout_s=self.settings.publish_timeout_s
        )

    async def start(self, *, with_db: bool = True) -> None:
        if with_db and self._pool is None:
            self._pool = await create_pool(self.settings)
        await self.broker.start()

    async def stop(self) -> None:
        await self.broker.stop()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def bootstrap(
    service: str,
    settings: Settings | None = None,
    config: WavelineConfig | None = None,
    secrets: Secrets | None = None,
) -> Runtime:
    """Build a Runtime; raises ``ConfigError`` (with the bad field and why) on bad input."""
    settings = settings or load_settings()
    config = config or load_config(settings.config)
    secrets = secrets or Secrets.from_env(config.auth, names=config.secret_env_names())
    return Runtime(
        service=service,
        settings=settings,
        config=config,
        secrets=secrets,
        broker=make_broker(settings, client_id=f"waveline-{service}"),
        topics=Topics(settings.topic_prefix),
    )
