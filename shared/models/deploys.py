"""``waveline.deploys``: one Argo CD application's sync and health for a revision."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from waveline.shared.models.base import Message


class DeployReported(Message):
    """What argocd-notifications posted for ``app`` (an Argo CD Application = a target)."""

    event_id: UUID
    app: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")
    revision: str = Field(pattern=r"^[a-f0-9]{40}$")
    phase: str = Field(default="", max_length=64)
    health: str = Field(default="", max_length=64)
    sync: str = Field(default="", max_length=64)
    reported_at: datetime
