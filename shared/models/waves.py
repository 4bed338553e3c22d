"""``waveline.waves``: what a wave runs, as decided by the status-tracker."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from waveline.shared.models.base import Message, PipelineName, WaveName


class WaveStatus(Message):
    """Wave ``wave`` runs ``app_sha`` at config commit ``cfg_sha`` (or is failing)."""

    event_id: UUID
    pipeline: PipelineName
    wave: WaveName
    state: Literal["running", "failing"]
    app_sha: str | None = None
    cfg_sha: str | None = None
    reason: str | None = None
    at: datetime
