"""``waveline.operator``: approve, hold, release or roll back a wave."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from waveline.shared.models.base import Message, PipelineName, WaveName


class OperatorCommand(Message):
    event_id: UUID
    pipeline: PipelineName
    wave: WaveName
    action: Literal["approve", "hold", "release", "rollback"]
    to: str | None = None
    actor: str = "operator"
    issued_at: datetime
