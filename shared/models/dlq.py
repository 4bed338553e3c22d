"""``waveline.dlq``: a message that could not be handled, with the reason."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from waveline.shared.models.base import Message


class DeadLetter(Message):
    event_id: UUID
    service: str
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    payload: str
    error_code: str
    reason: str
    retriable: bool
    failed_at: datetime
