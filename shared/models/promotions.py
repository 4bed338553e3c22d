"""``waveline.promotions``: the life of one promotion, for the notifier and audit.

``requested`` (promoter) → ``committed`` (commit strategy: on ``auto``) | ``opened`` (a pull
request opened or updated) | ``delivered`` (the webhook receiver answered 2xx) → ``done`` |
``failed`` | ``cancelled`` | ``superseded`` (a newer set took the same promotion branch).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Field

from waveline.shared.models.base import Message, PipelineName, ServiceName, WaveName
from waveline.shared.models.images import ImageRef

PromotionStatus = Literal[
    "requested", "committed", "opened", "delivered", "done", "failed", "cancelled", "superseded"
]
TERMINAL: frozenset[str] = frozenset({"done", "failed", "cancelled", "superseded"})


class PromotionEvent(Message):
    event_id: UUID
    promotion_id: UUID
    pipeline: PipelineName
    from_wave: WaveName | None = None
    to_wave: WaveName
    app_sha: str
    images: dict[ServiceName, ImageRef] = Field(default_factory=dict)
    cfg_sha: str | None = Field(
        default=None, description="requested: the commit the source wave runs; later: ours"
    )
    strategy: Literal["commit", "pull-request", "webhook"] = "commit"
    status: PromotionStatus
    url: str | None = Field(default=None, description="the pull request, when there is one")
    detail: str | None = None
    at: datetime
