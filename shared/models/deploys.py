"""``waveline.deploys``: one Argo CD application's sync and health for a revision."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from waveline.shared.models.base import Message

# A target: an Argo CD Application's name, or a Flux object's
# ``Kustomization|HelmRelease/<namespace>/<name>`` (shared/flux.py checks the names' lengths).
_TARGET = (
    r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,252}"
    r"|(?:Kustomization|HelmRelease)/[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"/[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)$"
)


class DeployReported(Message):
    """What argocd-notifications posted for ``app`` (an Argo CD Application = a target), or
    Flux reported for a Kustomization or HelmRelease (``app``: its target name)."""

    event_id: UUID
    app: str = Field(pattern=_TARGET)
    revision: str = Field(pattern=r"^[a-f0-9]{40}$")
    phase: str = Field(default="", max_length=64)
    health: str = Field(default="", max_length=64)
    sync: str = Field(default="", max_length=64)
    reported_at: datetime
