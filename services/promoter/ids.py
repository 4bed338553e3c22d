"""Deterministic ids: the same fact always yields the same id, so redelivery is harmless."""

from __future__ import annotations

import uuid

_NS = uuid.UUID("0c9f4e55-7f63-4b8e-a0f5-6c2d1f3e8b72")


def promotion_id(pipeline: str, wave: str, app_sha: str, kind: str) -> uuid.UUID:
    return uuid.uuid5(_NS, f"{kind}/{pipeline}/{wave}/{app_sha}")


def content_event_id(payload: bytes) -> uuid.UUID:
    """For image sets produced to Kafka without an ``event_id``."""
    return uuid.uuid5(_NS, payload.decode("utf-8", "replace"))
