"""``waveline.waves``: what a wave runs, as decided by the status-tracker."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Field

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
    cfg_position: int | None = Field(
        default=None,
        ge=0,
        description="where cfg_sha is on the watched branch (higher: later); the promoter "
        "ignores a status about an earlier position than one it applied",
    )
    lagging: list[str] = Field(
        default_factory=list,
        description="targets not counted as running app_sha when a quorum (min_healthy) let "
        "the wave run it: silent, not yet Synced and Healthy, degraded (when tolerated) or on "
        "another set",
    )
