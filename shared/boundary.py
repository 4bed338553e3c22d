"""The handler boundary: decides handled, dead letter or wait, and logs once.

Every consumer in every service goes through ``Boundary.run_batch``. A message that cannot be
valid — it fails parsing, or its handler fails with a permanent error — goes to the
dead-letter topic at once with the reason, and the consumer carries on. A retriable failure
(PostgreSQL or Kafka away, see shared/outage.py) is never dead-lettered: it leaves the batch
as ``Unfinished`` from the first message not handled, and the runtime pauses those
partitions and tries again later, indefinitely. A dead letter that cannot be published is
such a failure too, so nothing is lost silently.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from waveline.shared.errors import InvalidMessage, WavelineError
from waveline.shared.kafka import publish
from waveline.shared.models.dlq import DeadLetter
from waveline.shared.outage import Unfinished, first_offsets, is_retriable

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["Boundary", "error_code", "is_retriable"]


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
    publish_timeout_s: float = 5.0

    async def run_batch(
        self,
        items: Sequence[tuple[Any, bytes]],
        parse: Callable[[bytes], T],
        handle_many: Callable[[list[T]], Awaitable[None]],
    ) -> None:
        """Handle a batch of ``(record, body)``: invalid ones are dead-lettered alone, the
        rest handled together (one round trip for all). When the batch fails with a
        permanent error, each message is handled on its own, so the bad one is
        dead-lettered and the others go through. A retriable failure raises ``Unfinished``
        naming where each partition resumes."""
        parsed: list[tuple[Any, bytes, T]] = []
        for record, body in items:
            try:
                parsed.append((record, body, parse(body)))
            except (ValidationError, ValueError, InvalidMessage) as exc:
                logger.warning("%s: invalid message at %s: %s", self.service, _at(record), exc)
                await self.dead_letter_record(record, body, exc)
        if not parsed:
            return
        try:
            await handle_many([value for _, _, value in parsed])
            return
        except Exception as exc:
            if is_retriable(exc):
                raise Unfinished(exc, first_offsets(r for r, _, _ in parsed)) from exc
            if len(parsed) == 1:
                await self._give_up(parsed[0][0], parsed[0][1], exc)
                return
            logger.warning(
                "%s: batch of %d failed (%r); handling its messages one by one",
                self.service,
                len(parsed),
                exc,
            )
        for position, (record, body, value) in enumerate(parsed):
            try:
                await handle_many([value])
            except Exception as exc:
                if is_retriable(exc):
                    rest = (r for r, _, _ in parsed[position:])
                    raise Unfinished(exc, first_offsets(rest)) from exc
                await self._give_up(record, body, exc)

    async def _give_up(self, record: Any, body: bytes, exc: BaseException) -> None:
        logger.error(
            "%s: dead-lettering the message at %s: %s",
            self.service,
            _at(record),
            exc,
            exc_info=exc,
        )
        await self.dead_letter_record(record, body, exc)

    async def dead_letter_record(self, record: Any, body: bytes, exc: BaseException) -> None:
        """Publish a bounded letter about ``body`` (from Kafka ``record``) to the dead-letter
        topic with the reason. Raises ``BrokerUnavailable`` when the broker does not
        acknowledge: the caller must then not count the record as handled.

        A record of the dead-letter topic itself is never dead-lettered (a letter about a
        letter could loop): it is logged and dropped."""
        topic = getattr(record, "topic", "?")
        if topic == self.dlq_topic:
            logger.error(
                "%s: dropping unusable dead letter at %s (no letter about a letter): %s",
                self.service,
                _at(record),
                exc,
            )
            return
        letter = DeadLetter.about(
            body,
            service=self.service,
            source_topic=topic,
            partition=getattr(record, "partition", None),
            offset=getattr(record, "offset", None),
            key=getattr(record, "key", None),
            error_code=error_code(exc),
            reason=str(exc),
            retriable=is_retriable(exc),
        )
        await publish(
            self.broker, letter, self.dlq_topic, key=letter.key, timeout_s=self.publish_timeout_s
        )


def _at(record: Any) -> str:
    return (
        f"{getattr(record, 'topic', '?')}[{getattr(record, 'partition', '?')}]"
        f"@{getattr(record, 'offset', '?')}"
    )
