"""Common base for every Kafka message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from waveline.shared.names import check_app_sha, check_name


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Frozen, strict about unknown fields, serialised by alias."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()


ServiceName = Annotated[str, AfterValidator(lambda v: check_name(v, "service name"))]
PipelineName = Annotated[str, AfterValidator(lambda v: check_name(v, "pipeline name"))]
WaveName = Annotated[str, AfterValidator(lambda v: check_name(v, "wave name"))]
AppSha = Annotated[str, AfterValidator(check_app_sha)]
