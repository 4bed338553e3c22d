"""``waveline.git.commands`` (keyed by repo) and ``waveline.git.events``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, TypeAdapter

from waveline.shared.models.base import AppSha, Message, PipelineName, ServiceName, WaveName
from waveline.shared.models.images import ImageRef

Sha = Annotated[str, Field(pattern=r"^[a-f0-9]{40}$")]
RepoName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


class _Command(Message):
    command_id: UUID = Field(description="becomes the commit's Autocommit-Event-Id trailer")
    repo: RepoName
    issued_at: datetime


class IntroduceImages(_Command):
    """Write a new image set into the first wave's files: one commit on ``auto``."""

    kind: Literal["introduce"] = "introduce"
    pipeline: PipelineName
    wave: WaveName
    app_sha: AppSha
    images: dict[ServiceName, ImageRef] = Field(min_length=1)
    branch: str | None = Field(
        default=None,
        description="pull-request strategy: push this branch, built on watched, not auto",
    )
    attempt: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="retry after eviction: 2 and up become the Waveline-Attempt trailer; such a"
        " command is a no-op while a commit of the set is on auto or watched",
    )


class PromoteWave(_Command):
    """Copy ``from_wave``'s files as of ``deployed_sha`` into ``to_wave``'s files."""

    kind: Literal["promote"] = "promote"
    pipeline: PipelineName
    from_wave: WaveName
    to_wave: WaveName
    app_sha: AppSha
    deployed_sha: Sha
    branch: str | None = Field(
        default=None,
        description="pull-request strategy: push this branch, built on watched, not auto",
    )


class FastForward(_Command):
    """Move ``watched`` to ``sha`` (all required checks green)."""

    kind: Literal["fast_forward"] = "fast_forward"
    sha: Sha


class Evict(_Command):
    """Remove ``sha`` from ``auto`` (a required check is red), replaying later commits."""

    kind: Literal["evict"] = "evict"
    sha: Sha


class RollbackWave(_Command):
    """Write ``wave``'s files as they were at the earlier commit ``to_sha``."""

    kind: Literal["rollback"] = "rollback"
    pipeline: PipelineName
    wave: WaveName
    app_sha: AppSha
    to_sha: Sha


class AlignAuto(_Command):
    """Re-align ``auto`` onto ``watched`` (reset, or replay if they diverged)."""

    kind: Literal["align"] = "align"


GitCommand = Annotated[
    IntroduceImages | PromoteWave | FastForward | Evict | RollbackWave | AlignAuto,
    Field(discriminator="kind"),
]
GIT_COMMAND = TypeAdapter[
    IntroduceImages | PromoteWave | FastForward | Evict | RollbackWave | AlignAuto
](GitCommand)

Outcome = Literal["committed", "fast_forwarded", "evicted", "aligned", "noop", "rejected", "failed"]


class GitEvent(Message):
    """What the git-writer did with one command."""

    event_id: UUID
    command_id: UUID
    command_kind: str
    repo: RepoName
    outcome: Outcome
    branch: str | None = None
    sha: str | None = None
    old_sha: str | None = None
    replayed: dict[str, str] = Field(default_factory=dict, description="old sha -> new sha")
    trailers: dict[str, str] = Field(default_factory=dict)
    wave_apps: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="for each commit the command made or kept: {'pipeline/wave': app_sha}",
    )
    pipeline: str | None = None
    wave: str | None = None
    app_sha: str | None = None
    values_before: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="the wave's layout values before the commit"
    )
    values_after: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="the wave's layout values the commit wrote"
    )
    reason: str | None = None
    rule: str | None = Field(
        default=None,
        description="rejected: the admission rule the command broke (docs/security.md)",
    )
    timings_ms: dict[str, float] = Field(default_factory=dict)
    at: datetime
