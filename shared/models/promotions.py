"""``waveline.promotions``: the life of one promotion, for the notifier and audit."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Field

from waveline.shared.models.base import Message, PipelineName, ServiceName, WaveName
from waveline.shared.models.images import ImageRef


class PromotionEvent(Message):
    event_id: UUID
    promotion_id: UUID
    pipeline: PipelineName
    from_wave: WaveName | None = None
    to_wave: WaveName
    app_sha: str
    images: dict[ServiceName, ImageRef] = Field(default_factory=dict)
    cfg_sha: str | None = None
    strategy: Literal["commit", "pull-request", "webhook"] = "commit"
    status: Literal["requested", "committed", "done", "failed", "cancelled"]
    at: datetime
