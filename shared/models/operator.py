"""``waveline.operator``: approve, hold, release or roll back a wave; or the result an
external system reports for a webhook promotion."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Field, model_validator

from waveline.shared.models.base import AppSha, Message, PipelineName, WaveName


class OperatorCommand(Message):
    event_id: UUID
    pipeline: PipelineName
    wave: WaveName
    action: Literal["approve", "hold", "release", "rollback", "result"]
    to: str | None = None
    # The name of the token that sent it (ingest sets it; no client-supplied actor is read).
    actor: str = Field(default="operator", max_length=100)
    # action "result": which promotion, and how it ended
    promotion_id: UUID | None = None
    result: Literal["succeeded", "failed"] | None = None
    detail: str | None = Field(default=None, max_length=2000)
    issued_at: datetime
    # approve: the image set approved (the one waiting at the gate when ingest accepted the
    # request); hold: the set waiting when the gate was held (None: none waited); release:
    # the set the gate held. The promoter approves only this set.
    app_sha: AppSha | None = None
    # release: the hold it ends (the event_id of that hold); a release of any other hold
    # (a replayed one, say) changes nothing.
    hold_id: UUID | None = None

    @model_validator(mode="after")
    def _result_complete(self) -> OperatorCommand:
        if self.action == "result" and (self.promotion_id is None or self.result is None):
            raise ValueError("a result names promotion_id and result")
        # Older commands named no set: applying one now could approve whatever waits at
        # that moment, or end a hold set since, so they are refused.
        if self.action == "approve" and self.app_sha is None:
            raise ValueError("an approval names the image set it approves (app_sha)")
        if self.action == "release" and self.hold_id is None:
            raise ValueError("a release names the hold it ends (hold_id)")
        return self
