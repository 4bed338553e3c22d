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
    # Who reported it (docs/security.md, Deploy reports, checks, approvals): a required
    # check naming its reporter counts only from that app or user.
    app: str | None = Field(
        default=None,
        max_length=100,
        description="the GitHub App that reported it: a check run's or suite's app slug, or "
        "a status created by an App installation (sender '<slug>[bot]')",
    )
    user: str | None = Field(
        default=None, max_length=100, description="a commit status: the login that created it"
    )
