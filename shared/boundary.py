"""The handler boundary: decides ack, retry or dead letter, and logs the exception once.

Every consumer in every service goes through ``Boundary.run_batch``. Validation failures and
permanent errors go to the dead-letter topic with the reason, and the message is acked so
the consumer carries on. Retriable errors are retried in place with backoff a bounded number
of times, then dead-lettered. If even the dead-letter publish fails, the error propagates so
the message is *not* acked and Kafka redelivers it: nothing is lost silently.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from waveline.shared.errors import InvalidMessage, WavelineError
from waveline.shared.kafka import publish
from waveline.shared.models.base import utcnow
from waveline.shared.models.dlq import DeadLetter

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_retriable(exc: BaseException) -> bool:
    if isinstance(exc, WavelineError | KafkaError):
        return bool(exc.retriable)
    # Lost connections and serialization conflicts heal on their own; bad SQL does not.
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.exceptions.SerializationError
        | asyncpg.exceptions.DeadlockDetectedError
        | asyncpg.InterfaceError
        | ConnectionError
        | TimeoutError,
    )


def error_code(exc: BaseException) -> str:
    if isinstance(exc, WavelineError):
        return exc.code
    if isinstance(exc, ValidationError):
        return InvalidMessage.code
    return type(exc).__name__


@dataclass
class Boundary:
    broker: KafkaBroker
    dlq_topic: str
    service: str
    retries: int = 3
    backoff_s: float = 0.2
    publish_timeout_s: float = 5.0

    async def run_batch(
        self,
        items: Sequence[tuple[Any, bytes]],
        parse: Callable[[bytes], T],
        handle_many: Callable[[list[T]], Awaitable[None]],
    ) -> None:
        """``run`` for a batch of ``(record, body)``: invalid ones are dead-lettered alone,
        the rest handled together (one round trip for all). When the batch still fails
        after the retries, each message is handled on its own, so one bad message is
        dead-lettered and the others go through."""
        parsed: list[tuple[Any, bytes, T]] = []
        for record, body in items:
            try:
                parsed.append((record, body, parse(body)))
            except (ValidationError, ValueError, InvalidMessage) as exc:
                logger.warning("%s: invalid message at %s: %s", self.service, _at(record), exc)
                await self.dead_letter_record(record, body, exc)
        if not parsed:
            return
        if len(parsed) > 1:
            values = [value for _, _, value in parsed]
            try:
                await self._retrying(functools.partial(handle_many, values))
                return
            except Exception as exc:
                logger.warning(
                    "%s: batch of %d failed (%r); handling its messages one by one",
                    self.service,
                    len(parsed),
                    exc,
                )
        for record, body, value in parsed:
            try:
                await self._retrying(functools.partial(handle_many, [value]))
            except Exception as exc:
                logger.exception("%s: giving up on message from %s", self.service, _at(record))
                await self.dead_letter_record(record, body, exc)

    async def _retrying(self, call: Callable[[], Awaitable[None]]) -> None:
        """``call()``, retried in place while it fails with a retriable error; the last
        error propagates."""
        attempt = 0
        while True:
            try:
                await call()
                return
            except Exception as exc:
                attempt += 1
                if not is_retriable(exc) or attempt > self.retries:
                    raise
                logger.warning(
                    "%s: retriable failure (attempt %d/%d): %r",
                    self.service,
                    attempt,
                    self.retries,
                    exc,
                )
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))

    async def dead_letter_record(self, record: Any, body: bytes, exc: BaseException) -> None:
        """Publish ``body`` (from Kafka ``record``) to the dead-letter topic with the reason.
        Raises if the broker does not acknowledge: the caller must then not ack."""
        key = getattr(record, "key", None)
        letter = DeadLetter(
            event_id=uuid.uuid4(),
            service=self.service,
            source_topic=getattr(record, "topic", "?"),
            partition=getattr(record, "partition", None),
            offset=getattr(record, "offset", None),
            key=key.decode("utf-8", "replace") if isinstance(key, bytes) else None,
            payload=body.decode("utf-8", "replace"),
            error_code=error_code(exc),
            reason=str(exc)[:4000],
            retriable=is_retriable(exc),
            failed_at=utcnow(),
        )
        await publish(
            self.broker, letter, self.dlq_topic, key=letter.key, timeout_s=self.publish_timeout_s
        )


def _at(record: Any) -> str:
    return (
        f"{getattr(record, 'topic', '?')}[{getattr(record, 'partition', '?')}]"
        f"@{getattr(record, 'offset', '?')}"
    )
