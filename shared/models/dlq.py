"""``waveline.dlq``: a message that could not be handled, with the reason.

A dead letter is always small, whatever it is about: it carries the first
``PAYLOAD_HEAD_BYTES`` of the payload with the payload's size and sha256, never the whole
payload. A record near the broker's message limit would otherwise make a dead letter over
the producer's limit, which could never be published and would stall its partition.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from uuid import UUID

from pydantic import Field

from waveline.shared.models.base import Message, utcnow

# Enough to see what a message was; the whole letter stays far below Kafka's 1 MB default.
PAYLOAD_HEAD_BYTES = 4096
REASON_CHARS = 2000
KEY_CHARS = 256
# Bytes of a serialized letter at most (the head's bytes may each become a 6-byte JSON
# escape); tests check a letter about anything stays below it.
MAX_LETTER_BYTES = 64 * 1024


class DeadLetter(Message):
    event_id: UUID
    service: str
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = Field(default=None, max_length=KEY_CHARS)
    payload: str = Field(
        description=f"the payload's first {PAYLOAD_HEAD_BYTES} bytes, as UTF-8 (bad bytes replaced)"
    )
    payload_bytes: int | None = Field(default=None, description="the whole payload's size")
    payload_sha256: str | None = Field(default=None, description="sha256 of the whole payload")
    error_code: str
    reason: str = Field(max_length=REASON_CHARS)
    retriable: bool
    failed_at: datetime

    @classmethod
    def about(
        cls,
        payload: bytes,
        *,
        service: str,
        source_topic: str,
        error_code: str,
        reason: str,
        retriable: bool,
        key: bytes | str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        event_id: UUID | None = None,
    ) -> DeadLetter:
        """A bounded letter about ``payload``: head, size and digest, reason and key cut."""
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        return cls(
            event_id=event_id or uuid.uuid4(),
            service=service,
            source_topic=source_topic,
            partition=partition,
            offset=offset,
            key=key[:KEY_CHARS] if key is not None else None,
            payload=payload[:PAYLOAD_HEAD_BYTES].decode("utf-8", "replace"),
            payload_bytes=len(payload),
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            error_code=error_code[:100],
            reason=reason[:REASON_CHARS],
            retriable=retriable,
            failed_at=utcnow(),
        )
