"""``waveline.images``: a CI announcement of a new image set (docs/architecture.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from waveline.shared.models.base import AppSha, Message, PipelineName, ServiceName
from waveline.shared.names import check_name, split_digest_ref, split_tag_ref

MAX_SERVICES = 256


def _with_offset(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise ValueError("app_committed_at needs a time zone offset (e.g. Z)")
    return value


# With a time zone, so nothing guesses one.
CommitTime = Annotated[datetime, AfterValidator(_with_offset)]


class ImageRef(Message):
    """One service's image: ``Tag`` is ``repo:tag``, ``Digest`` is ``repo@sha256:…``.

    Lower-case keys (``tag``, ``digest``) are accepted; a bare ``sha256:…`` digest takes the
    repository from the tag. Output always uses the capitalised keys.
    """

    tag: str = Field(alias="Tag")
    digest: str = Field(alias="Digest")

    @model_validator(mode="after")
    def _consistent(self) -> ImageRef:
        repository, _ = split_tag_ref(self.tag)
        digest_repo, digest = split_digest_ref(self.digest)
        if digest_repo is not None and digest_repo != repository:
            raise ValueError(
                f"Digest repository {digest_repo!r} differs from Tag repository {repository!r}"
            )
        if digest_repo is None:
            object.__setattr__(self, "digest", f"{repository}@{digest}")
        return self

    @property
    def repository(self) -> str:
        return split_tag_ref(self.tag)[0]

    @property
    def bare_tag(self) -> str:
        return split_tag_ref(self.tag)[1]

    @property
    def bare_digest(self) -> str:
        return split_digest_ref(self.digest)[1]


class ImageSetAnnounced(Message):
    """The body of ``POST /v1/images`` and the message on ``waveline.images``.

    ``event_id`` is set by ingest; CI producing straight to Kafka may omit it, and the
    promoter then derives one from the content, so a replay stays idempotent.
    """

    pipeline: PipelineName
    app_sha: AppSha
    images: dict[ServiceName, ImageRef] = Field(min_length=1, max_length=MAX_SERVICES)
    event_id: UUID | None = None
    received_at: datetime | None = None
    source: Literal["http", "kafka", "cli"] = "kafka"
    # Who announced it: the name of the token ingest accepted (docs/security.md); on a
    # message produced straight to the topic, whatever its producer says (Kafka's ACLs
    # decide who may produce).
    actor: str | None = Field(default=None, max_length=100)
    # When the app commit was made, as CI knows it (optional): where DORA's lead time for
    # changes starts (docs/dora.md); without it, the announcement.
    app_committed_at: CommitTime | None = Field(
        default=None,
        description="the app commit's time (RFC 3339 with an offset), sent by CI; lead time "
        "for changes starts there (else at the announcement)",
    )

    @field_validator("images", mode="before")
    @classmethod
    def _service_names(cls, value: object) -> object:
        if isinstance(value, dict):
            for key in value:
                if isinstance(key, str):
                    check_name(key, "service name")
        return value


class AnnouncedCommit(BaseModel):
    """What the DORA feed reads of a ``waveline.images`` message: the app commit and the
    time CI says it was made. The images are neither read nor checked (the promoter's own
    consumer refuses a set whose images are wrong): checking 20 services' references again
    cost the promoter a quarter of its CPU per set (docs/benchmarks.md, Whole path)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    pipeline: PipelineName
    app_sha: AppSha
    app_committed_at: CommitTime | None = None
