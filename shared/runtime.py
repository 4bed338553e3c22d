"""``bootstrap()``: load config once and wire the dependencies every service shares.

Services receive a ``Runtime`` and never read the environment themselves. The broker is
built at bootstrap (so subscribers can be registered and documented before connecting);
the Postgres pool opens in ``start()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from aiokafka import TopicPartition
from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from pydantic import BaseModel

from waveline.shared.boundary import Boundary
from waveline.shared.config import Secrets, Settings, WavelineConfig, load_config, load_settings
from waveline.shared.db import create_pool
from waveline.shared.kafka import RawMessage, hold_prefetch, make_broker, publish
from waveline.shared.kafka import reachable as kafka_reachable
from waveline.shared.offsets import CommitOnRevoke, LazyCommitter, rewind
from waveline.shared.outage import (
    Backoff,
    PartitionPause,
    Unfinished,
    Waits,
    first_offsets,
    is_retriable,
)
from waveline.shared.topics import Topics
from waveline.shared.upstream.faststream_private import poll_without_idle_sleep

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Polled:
    """One poll's records, and the consumer they came from (for polling more)."""

    consumer: Any
    records: list[Any]


@dataclass
class Runtime:
    service: str
    settings: Settings
    config: WavelineConfig
    secrets: Secrets
    broker: KafkaBroker
    topics: Topics
    waits: Waits = field(init=False, repr=False)
    _pool: asyncpg.Pool | None = field(default=None, repr=False)
    _committers: list[LazyCommitter] = field(default_factory=list, repr=False)
    _pauses: list[PartitionPause] = field(default_factory=list, repr=False)
    _listeners: dict[str, CommitOnRevoke] = field(default_factory=dict, repr=False)
    _live_checks: list[Callable[[], str | None]] = field(default_factory=list, repr=False)
    _consuming_stopped: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.waits = Waits(self.service)

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.settings.retry_backoff_s, self.settings.retry_cap_s)

    def add_live_check(self, check: Callable[[], str | None]) -> None:
        """``check()`` returns why the service is not live (a stuck part), or None."""
        self._live_checks.append(check)

    def not_live(self) -> list[str]:
        return [why for check in self._live_checks if (why := check()) is not None]

    def joining(self) -> list[str]:
        """The consumers (``topic (group)``) that do not hold their partitions yet (or while
        their group rebalances): readiness waits for none, so a stack called up takes its first
        message at once instead of after the group's join."""
        return sorted(name for name, listener in self._listeners.items() if not listener.joined)

    async def until_joined(self) -> None:
        """Return once every consumer holds its partitions (see ``joining``)."""
        await asyncio.gather(*(lsn.joined_event.wait() for lsn in self._listeners.values()))

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
        batched: bool = False,
    ) -> None:
        """Subscribe ``handle`` to ``topic`` in consumer group ``group``, through the handler
        boundary (parse, retry, dead letter). The offset is committed after ``handle``
        returned; an error that escapes the boundary leaves it uncommitted (redelivery).

        Messages are polled in batches and handled one after the other in partition order;
        the offsets of handled batches are committed at most every
        ``settings.commit_interval_s`` (shared/offsets.py): per-message polling and commits
        cost more CPU (in the service and in Kafka) than the handlers themselves. Handlers
        are idempotent, so a batch redelivered after a failure or a crash is safe.

        ``batched``: the topic is off the announce-to-commit path, so its fetches wait up
        to ``settings.batched_fetch_wait_ms`` for messages to gather: one request carries
        many messages instead of one. Each Kafka request costs a Python client about as
        much as handling a message (measured: socket writes and response decoding were half
        of the promoter's CPU at 100 image sets/s)."""

        async def in_order(values: list[T]) -> None:
            for value in values:
                await handle(value)

        self.consume_batch(topic, group, parse, in_order, title=title, batched=batched)

    def consume_batch(
        self,
        topic: str,
        group: str,
        parse: Callable[[bytes], T],
        handle_many: Callable[[list[T]], Awaitable[None]],
        *,
        title: str,
        max_records: int = 200,
        batched: bool = False,
    ) -> None:
        """``consume`` for handlers that do one round trip for many messages: whatever
        arrived together (up to ``max_records``) is handled in one call, through
        ``Boundary.run_batch``; offsets are committed after it returned."""
        boundary = self.boundary()

        async def handle(polled: Polled) -> None:
            bodies = [(r, r.value or b"") for r in polled.records]
            await boundary.run_batch(bodies, parse, handle_many)

        self.subscribe_records(
            topic,
            self.group(group, topic),
            handle,
            title=title,
            max_records=max_records,
            batched=batched,
        )

    def subscribe_records(
        self,
        topic: str,
        group_id: str,
        handle: Callable[[Polled], Awaitable[None]],
        *,
        title: str,
        description: str | None = None,
        max_records: int = 200,
        batch_timeout_ms: int = 100,
        batched: bool = False,
    ) -> None:
        """Subscribe ``handle`` to the raw records of ``topic``, a poll at a time. When it
        returns, the records of ``polled`` (which it may extend with more it polled itself)
        count as handled and their offsets are committed lazily.

        When it raises, the poll was not (wholly) handled: ``Unfinished`` says where each
        partition resumes (the records before count as handled), any other exception means
        none of it was. Either way those partitions are sought back and paused, and resume
        after a capped exponential backoff, indefinitely (shared/outage.py): an outage
        waits, it never dead-letters. The first failure of a wait logs it, with the
        traceback when the error is not a known outage (a bug would otherwise spin
        silently); later attempts log nothing until it recovers."""
        # Batched: the broker answers when 1 MiB waits or the time is up, so under load a
        # fetch every batched_fetch_wait_ms whatever the message rate. Otherwise aiokafka's
        # defaults: answer as soon as one message is there, long-poll 500 ms when idle.
        min_bytes, max_wait_ms = (
            (1 << 20, self.settings.batched_fetch_wait_ms) if batched else (1, 500)
        )
        committer = self.committer(topic)
        pause = PartitionPause(
            topic.removeprefix(self.settings.topic_prefix), self.waits, self.backoff
        )
        self._pauses.append(pause)

        listener = CommitOnRevoke(committer)
        self._listeners[f"{topic} ({group_id})"] = listener

        subscriber = self.broker.subscriber(
            topic,
            group_id=group_id,
            auto_offset_reset="earliest",
            # Offsets are committed by the committer, only ever for handled messages.
            ack_policy=AckPolicy.MANUAL,
            listener=listener,
            batch=True,
            max_records=max_records,
            # Only bounds an empty poll: a record is returned as soon as it is fetched. So
            # it is how often an idle consumer wakes up (faststream's sleep after an empty
            # poll is gone: see poll_without_idle_sleep).
            batch_timeout_ms=batch_timeout_ms,
            title=title,
            description=description,
            fetch_min_bytes=min_bytes,
            fetch_max_wait_ms=max_wait_ms,
        )
        poll_without_idle_sleep(subscriber)

        @subscriber
        async def on_poll(msg: RawMessage) -> None:
            raw = msg.raw_message
            polled = Polled(
                getattr(msg, "consumer", None), list(raw if isinstance(raw, tuple) else (raw,))
            )
            try:
                await handle(polled)
            except Exception as exc:
                unfinished = (
                    exc
                    if isinstance(exc, Unfinished)
                    else Unfinished(exc, first_offsets(polled.records))
                )
                resume_at = unfinished.resume_at
                handled = [
                    r
                    for r in polled.records
                    if r.offset < resume_at.get(TopicPartition(r.topic, r.partition), 1 << 62)
                ]
                if not is_retriable(unfinished.cause) and not pause.waiting:
                    logger.error(
                        "%s %s: unexpected failure; waiting and retrying rather than losing"
                        " the messages",
                        self.service,
                        pause.name,
                        exc_info=unfinished.cause,
                    )
                pause.pause(polled.consumer, resume_at, unfinished.cause)
                committer.handled(polled.consumer, handled)
                await committer.after_batch()
                return
            except BaseException:
                rewind(polled.consumer, polled.records)
                raise
            pause.succeeded(polled.records)
            committer.handled(polled.consumer, polled.records)
            await committer.after_batch()

    def committer(self, topic: str) -> LazyCommitter:
        """A lazy committer for one consumer of ``topic``, flushed when the runtime stops."""
        committer = LazyCommitter(f"{self.service} {topic}", self.settings.commit_interval_s)
        self._committers.append(committer)
        return committer

    async def publish(self, message: BaseModel, topic: str, *, key: str) -> None:
        """Publish and wait for Kafka's acknowledgement (``BrokerUnavailable`` otherwise)."""
        await publish(
            self.broker, message, topic, key=key, timeout_s=self.settings.publish_timeout_s
        )

    async def start(self, *, with_db: bool = True) -> None:
        """Open the pool and start the broker. PostgreSQL or Kafka away at start is an
        outage like any other: waited out with backoff (readiness says so), not a crash
        loop; a bad URL, password, credential or certificate still fails at once."""
        if with_db and self._pool is None:
            self._pool = await self._until_up(
                lambda: create_pool(
                    self.settings,
                    min_size=self.settings.database_pool_min_size,
                    max_size=self.settings.database_pool_max_size,
                )
            )
        await self._until_up(lambda: kafka_reachable(self.settings))
        await self.broker.start()
        hold_prefetch(self.broker)

    async def _until_up(self, attempt_once: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                result = await attempt_once()
            except Exception as exc:
                if not is_retriable(exc):
                    raise
                attempt = self.waits.failed("start", exc)
                await asyncio.sleep(self.backoff.delay(attempt))
                continue
            if attempt:
                self.waits.succeeded("start")
            return result

    async def stop_consuming(self) -> None:
        """Commit what was handled and stop the broker (waiting for batches in flight, which
        commit as they end); the Postgres pool stays open. Safe to call twice."""
        if self._consuming_stopped:
            return
        self._consuming_stopped = True
        for pause in self._pauses:
            pause.close()
        for committer in self._committers:
            await committer.close()
        await self.broker.stop()

    async def stop(self) -> None:
        await self.stop_consuming()
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
