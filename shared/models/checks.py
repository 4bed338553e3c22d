"""``waveline.checks``: one commit status or check result on the config repo."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import Field

from waveline.shared.models.base import Message

CheckState = Literal["pending", "success", "failure", "error"]


class CheckReported(Message):
    """A required-check candidate reported for ``sha`` (GitHub status or check run)."""

    event_id: UUID
    repo: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="the config repo's key in WAVELINE_CONFIG (ingest resolves GitHub's name)",
    )
    sha: str = Field(pattern=r"^[a-f0-9]{40}$")
    context: str = Field(min_length=1, max_length=255)
    state: CheckState
    kind: Literal["status", "check_run", "check_suite"] = "status"
    branches: tuple[str, ...] = ()
    reported_at: datetime
