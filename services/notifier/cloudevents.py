"""Outbound payloads: CloudEvents 1.0 in structured JSON mode, and Slack-compatible text.

A payload is built once, serialized once, and the caller keeps the resulting bytes: those exact
bytes are signed (``X-Signature``) and re-sent unchanged on every retry, so a receiver can
deduplicate on the CloudEvent ``id`` and verify the signature of each copy alike.

Serialization is deterministic: the same event always yields the same bytes (sorted keys,
compact separators, UTF-8, no NaN/Infinity, which JSON does not have). Nothing here reads the
clock, so ``time`` is always supplied by the caller (the time of the occurrence, persisted with
the event), never "now".
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from waveline.shared.errors import InvalidMessage

logger = logging.getLogger(__name__)

SPECVERSION = "1.0"
#: Media type of a CloudEvent in structured mode (CloudEvents JSON format, §3 "Envelope").
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
#: Media type of the ``data`` member: Waveline events always carry a JSON object.
DATA_CONTENT_TYPE = "application/json"
#: Slack incoming webhooks (and Mattermost, Discord's /slack endpoint) take plain JSON.
SLACK_CONTENT_TYPE = "application/json; charset=utf-8"

PROMOTION_REQUESTED = "io.waveline.promotion.requested"

# CloudEvents extension attribute names are lower-case ASCII letters and digits.
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")
_RESERVED = frozenset(
    {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
    }
)


def pipeline_source(pipeline: str) -> str:
    """The default ``source`` of an event about ``pipeline``: ``waveline/<pipeline>``."""
    if not pipeline:
        raise InvalidMessage("pipeline must not be empty")
    return f"waveline/{pipeline}"


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC as RFC 3339, ``Z``-suffixed; microseconds only when non-zero.

    Naive datetimes are refused: their meaning depends on the host's zone, and a retry on
    another host would then serialize (and sign) different bytes.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidMessage("event time must be timezone-aware")
    utc = moment.astimezone(UTC)
    spec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


@dataclass(frozen=True)
class CloudEvent:
    """One CloudEvents 1.0 event with a JSON object as ``data``.

    ``id`` is chosen by the caller and must stay the same for every delivery of the same
    occurrence (CloudEvents: ``source`` + ``id`` identify an event; receivers deduplicate on
    them). ``source`` is a URI-reference such as ``waveline/app`` or ``https://host/...``.
    ``extensions`` are extra top-level attributes (lower-case alphanumeric names, string
    values), e.g. ``{"pipeline": "app"}`` for routing without parsing ``data``.
    """

    id: str
    source: str
    type: str
    time: datetime
    data: Mapping[str, Any]
    subject: str | None = None
    extensions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        for name in ("id", "source", "type"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidMessage(f"CloudEvent {name} must be a non-empty string")
        if self.subject is not None and not self.subject:
            raise InvalidMessage("CloudEvent subject, when given, must not be empty")
        rfc3339(self.time)  # validates early, not at send time
        if not isinstance(self.data, Mapping):
            raise InvalidMessage("CloudEvent data must be a JSON object (a mapping)")
        for name, value in self.extensions.items():
            if name in _RESERVED or not _EXTENSION_NAME.fullmatch(name):
                raise InvalidMessage(
                    f"invalid CloudEvent extension name {name!r}: lower-case a-z0-9, at most "
                    "20 characters, not a core attribute"
                )
            if not isinstance(value, str):
                raise InvalidMessage(f"CloudEvent extension {name!r} must be a string")

    def to_dict(self) -> dict[str, Any]:
        """The structured-mode JSON object (attributes and ``data`` as top-level members)."""
        document: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": rfc3339(self.time),
            "datacontenttype": DATA_CONTENT_TYPE,
            "data": dict(self.data),
        }
        if self.subject is not None:
            document["subject"] = self.subject
        document.update(self.extensions)
        return document

    def to_bytes(self) -> bytes:
        """The exact bytes to send and sign; equal events give equal bytes."""
        return canonical_json(self.to_dict())


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Deterministic compact JSON: sorted keys, UTF-8, no NaN/Infinity.

    Raises ``InvalidMessage`` (permanent) when the document holds a value JSON cannot carry.
    """
    try:
        text = json.dumps(
            document,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        # The message names the offending type, never a value.
        raise InvalidMessage(f"event is not representable as JSON: {exc}") from None
    return text.encode("utf-8")


def promotion_requested(
    *,
    event_id: str,
    pipeline: str,
    time: datetime,
    data: Mapping[str, Any],
    subject: str | None = None,
    source: str | None = None,
) -> CloudEvent:
    """An ``io.waveline.promotion.requested`` event for ``pipeline``.

    ``source`` defaults to ``waveline/<pipeline>``; ``subject`` is typically the wave. The
    pipeline is also carried as the ``pipeline`` extension attribute, for routing without
    parsing ``data``.
    """
    return CloudEvent(
        id=event_id,
        source=source or pipeline_source(pipeline),
        type=PROMOTION_REQUESTED,
        time=time,
        subject=subject,
        data=data,
        extensions=MappingProxyType({"pipeline": pipeline}),
    )


def slack_payload(text: str) -> bytes:
    """A Slack-compatible incoming-webhook body, ``{"text": ...}``, as deterministic bytes.

    Send it with ``SLACK_CONTENT_TYPE``.
    """
    if not text:
        raise InvalidMessage("a Slack message needs text")
    return canonical_json({"text": text})
