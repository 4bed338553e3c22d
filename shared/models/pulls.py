"""``waveline.pulls``: a pull request on a config repo changed (GitHub ``pull_request``)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from waveline.shared.models.base import Message


class PullRequestReported(Message):
    event_id: UUID
    repo: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="the config repo's key in WAVELINE_CONFIG",
    )
    number: int = Field(ge=1)
    action: str = Field(min_length=1, max_length=64)
    state: str = Field(description="open or closed")
    merged: bool = False
    head_ref: str
    head_sha: str = Field(pattern=r"^[a-f0-9]{40}$")
    base_ref: str
    merge_sha: str | None = None
    url: str | None = None
    reported_at: datetime
