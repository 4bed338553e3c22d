"""Kafka helpers: one broker factory, topic creation, acknowledged publishing."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from faststream.exceptions import IncorrectState
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage as _KafkaMessage
from pydantic import BaseModel

from waveline.shared import kafka_clients
from waveline.shared.config import Settings
from waveline.shared.errors import BrokerUnavailable, PublishRefused

# Topic administration lives in topic_admin; these names stay importable from here
# (the aliases mark them re-exported).
from waveline.shared.topic_admin import ensure_topics as ensure_topics  # noqa: PLC0414
from waveline.shared.topic_admin import partitions_of as partitions_of  # noqa: PLC0414
from waveline.shared.upstream import aiokafka_private
from waveline.shared.upstream.faststream_private import MessageNow

logger = logging.getLogger(__name__)


# A handler parameter receiving faststream's message (records in ``raw_message``), resolved
# on the event loop (shared/upstream/faststream_private.py).
RawMessage = Annotated[_KafkaMessage, MessageNow("message")]


# Errors about the record itself: publishing it again cannot succeed.
REFUSED_RECORD = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    InvalidMessageError,
    CorruptRecordException,
)

# How long aiokafka's fetcher leaves a node alone while records it prefetched from one of
# the node's partitions wait to be consumed (its default is 0.1 s; see hold_prefetch).
HOLD_PREFETCH_S = 3600.0


def hold_prefetch(broker: KafkaBroker) -> int:
    """Stop every started subscriber's fetcher from fetching a node's other partitions
    while records it prefetched from that node still wait for the handler; returns how
    many consumers were tuned.

    aiokafka's default: 100 ms after prefetched records were left unconsumed, it fetches
    the node's other partitions. When those are empty the broker parks that request for
    ``fetch_max_wait_ms`` (500 ms), and while it is parked no fetch for the partition that
    has data can be sent. So a handler busy for more than 100 ms made its own partition
    stall for up to half a second once it returned: measured on the git-writer at 100
    commands/s, 400-450 ms of idling after every long batch, with the backlog sitting on
    the broker. Our handlers take everything a poll returns and come back for more, so
    the other partitions lose nothing by waiting for that poll. The knob is not part of
    aiokafka's public API (the consumer does not pass it through); without it this logs a
    warning and changes nothing (shared/upstream/aiokafka_private.py)."""
    tuned = 0
    for subscriber in broker.subscribers:
        consumer = getattr(subscriber, "consumer", None)
        done = aiokafka_private.set_prefetch_backoff(consumer, HOLD_PREFETCH_S)
        if done == "unsupported":
            logger.warning("aiokafka's fetcher has no prefetch backoff; prefetch left as is")
            return tuned
        if done == "set":
            tuned += 1
    return tuned


def make_broker(settings: Settings, client_id: str) -> KafkaBroker:
    """A broker whose publishes wait for every in-sync replica (acks=all, idempotent),
    connected and authenticated as the settings say (shared/kafka_clients.py)."""
    return kafka_clients.broker(
        settings,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_batch_size=settings.kafka_max_batch_bytes,
        request_timeout_ms=int(settings.publish_timeout_s * 1000),
        graceful_timeout=10.0,
        logger=logging.getLogger(f"waveline.faststream.{client_id}"),
    )


async def reachable(settings: Settings) -> None:
    """Return once a client built from ``settings`` can bootstrap from Kafka; aiokafka's
    ``KafkaConnectionError`` (retriable) when no broker answers, ``KafkaAccessRefused``
    (permanent) when one refuses the client. Lets a service wait for Kafka before it starts
    faststream's broker, whose ``start`` is not meant to be retried half-done."""
    client = kafka_clients.admin(settings, request_timeout_ms=10_000)
    await kafka_clients.start(client, settings)
    await client.close()


async def publish(
    broker: KafkaBroker,
    message: BaseModel,
    topic: str,
    *,
    key: str | None = None,
    timeout_s: float = 5.0,
) -> None:
    """Publish and wait for the broker's acknowledgement; ``BrokerUnavailable`` (retriable)
    when it does not come, ``PublishRefused`` (permanent) when the record is refused."""
    try:
        async with asyncio.timeout(timeout_s):
            await broker.publish(
                message.model_dump_json().encode(),
                topic,
                key=key.encode() if key is not None else None,
                headers={"content-type": "application/json"},
            )
    except REFUSED_RECORD as exc:
        # The record itself is refused, every time; anything else (aiokafka's own timeout
        # error is not "retriable" either) is an outage to wait out.
        raise PublishRefused(f"Kafka refused the publish to {topic}: {exc!r}") from exc
    except (TimeoutError, KafkaError, IncorrectState) as exc:
        raise BrokerUnavailable(
            f"Kafka did not acknowledge the publish to {topic}: {exc!r}"
        ) from exc
