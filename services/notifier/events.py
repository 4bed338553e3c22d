"""What the notifier sends, built from the Kafka events it follows.

Pure functions: a promotion event for a webhook wave becomes the ``promotion.requested``
CloudEvent; evictions, failures, degraded waves, finished promotions and dead letters become
notifications for every configured webhook that wants them, as CloudEvents or as Slack's
``{"text"}``. Ids derive from the triggering event, so a redelivered event yields the same
delivery (inserted once) and the same CloudEvent id (receivers deduplicate on it).

A dead letter is told by its reason and a digest of the payload (sha256 and size), never the
payload itself: a payload may be anything a producer sent (a whole webhook body, a message
that failed because it held what it should not), and a notification leaves the system.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from waveline.services.notifier.cloudevents import (
    CONTENT_TYPE,
    SLACK_CONTENT_TYPE,
    CloudEvent,
    pipeline_source,
    promotion_requested,
    slack_payload,
)
from waveline.services.notifier.store import NewDelivery
from waveline.services.notifier.targets import notification_key, strategy_key
from waveline.shared.config import NotificationEvent, WavelineConfig
from waveline.shared.gitengine import trailers
from waveline.shared.models.dlq import DeadLetter
from waveline.shared.models.promotions import PromotionEvent

logger = logging.getLogger(__name__)

TYPES: dict[NotificationEvent, str] = {
    "evicted": "io.waveline.commit.evicted",
    "failed": "io.waveline.failed",
    "degraded": "io.waveline.wave.degraded",
    "promotion_done": "io.waveline.promotion.done",
    "dead_letter": "io.waveline.deadletter",
}


def result_path(pipeline: str, wave: str, promotion_id: uuid.UUID) -> str:
    return f"/v1/pipelines/{pipeline}/waves/{wave}/promotions/{promotion_id}/result"


def promotion_data(event: PromotionEvent) -> dict[str, Any]:
    """Everything the external system needs to promote, including the trailers its commit
    should carry so Waveline recognises it: the CloudEvent's ``data``, and the
    ``client_payload`` of a repository_dispatch (nine top-level properties; GitHub takes
    at most ten)."""
    return {
        "promotion_id": str(event.promotion_id),
        "pipeline": event.pipeline,
        "from_wave": event.from_wave,
        "to_wave": event.to_wave,
        "app_sha": event.app_sha,
        "images": {
            svc: {"tag": ref.tag, "digest": ref.digest} for svc, ref in event.images.items()
        },
        "config_commit": event.cfg_sha,
        "trailers": {
            trailers.PIPELINE: event.pipeline,
            trailers.APP_SHA: event.app_sha,
            trailers.TARGET: event.to_wave,
            trailers.REASON: (
                f"promoted from {event.from_wave} at {event.cfg_sha}"
                if event.from_wave
                else "new images published"
            ),
            trailers.EVENT_ID: str(event.promotion_id),
        },
        "result_url": result_path(event.pipeline, event.to_wave, event.promotion_id),
    }


def promotion_delivery(event: PromotionEvent, source_topic: str) -> NewDelivery:
    """The webhook strategy's request, a ``promotion.requested`` CloudEvent."""
    data = promotion_data(event)
    cloud = promotion_requested(
        event_id=str(event.promotion_id),
        pipeline=event.pipeline,
        time=event.at,
        data=data,
        subject=event.to_wave,
    )
    return NewDelivery(
        delivery_id=event.promotion_id,
        kind="promotion",
        target=strategy_key(event.pipeline, event.to_wave),
        pipeline=event.pipeline,
        promotion_id=event.promotion_id,
        event_type=cloud.type,
        source_topic=source_topic,
        body=cloud.to_bytes(),
        content_type=CONTENT_TYPE,
    )


@dataclass(frozen=True)
class Occurrence:
    """Something worth telling people about."""

    event_id: uuid.UUID
    kind: NotificationEvent
    pipelines: tuple[str, ...]  # the pipelines it concerns (empty: none in particular)
    subject: str
    text: str  # one line for humans (Slack)
    data: dict[str, Any]
    at: datetime
    source_topic: str


# What a dead-letter notification tells of its letter; ``payload`` (the head of what failed)
# is left out on purpose and replaced by its digest.
DEAD_LETTER_FIELDS = (
    "event_id",
    "service",
    "source_topic",
    "partition",
    "offset",
    "key",
    "error_code",
    "reason",
    "retriable",
    "failed_at",
)


def dead_letter_occurrence(letter: DeadLetter, source_topic: str) -> Occurrence:
    """The notification of ``letter``: where it came from, why it failed, and the payload's
    ``payload_sha256`` and ``payload_bytes`` so a receiver can match it to the message on the
    dead-letter topic. A letter without a digest (written before letters carried one) is
    digested from the head it holds, and says so with ``payload_digest_of: head``."""
    data = letter.model_dump(mode="json", include=set(DEAD_LETTER_FIELDS))
    if letter.payload_sha256 is not None:
        data["payload_sha256"] = letter.payload_sha256
        data["payload_bytes"] = letter.payload_bytes
        data["payload_digest_of"] = "payload"
    else:
        head = letter.payload.encode("utf-8")
        data["payload_sha256"] = hashlib.sha256(head).hexdigest()
        data["payload_bytes"] = len(head)
        data["payload_digest_of"] = "head"
    return Occurrence(
        event_id=letter.event_id,
        kind="dead_letter",
        pipelines=(),
        subject=letter.source_topic,
        text=(
            f"{letter.service} dead-lettered a message from {letter.source_topic}:"
            f" {letter.error_code}: {letter.reason[:300]}"
        ),
        data=data,
        at=letter.failed_at,
        source_topic=source_topic,
    )


def notification_deliveries(config: WavelineConfig, o: Occurrence) -> list[NewDelivery]:
    """One delivery per configured notification that wants ``o``."""
    out: list[NewDelivery] = []
    for name, n in sorted(config.notifications.items()):
        if o.kind not in n.events:
            continue
        if n.pipelines and o.pipelines and not set(n.pipelines) & set(o.pipelines):
            continue
        if n.format == "slack":
            body, content_type = (
                slack_payload(f"[waveline] {_slack_escape(o.text)}"),
                SLACK_CONTENT_TYPE,
            )
        else:
            cloud = CloudEvent(
                id=str(o.event_id),
                source=pipeline_source(o.pipelines[0]) if o.pipelines else "waveline",
                type=TYPES[o.kind],
                time=o.at,
                subject=o.subject,
                data=o.data,
            )
            body, content_type = cloud.to_bytes(), CONTENT_TYPE
        out.append(
            NewDelivery(
                delivery_id=uuid.uuid5(o.event_id, name),
                kind="notification",
                target=notification_key(name),
                pipeline=o.pipelines[0] if len(o.pipelines) == 1 else None,
                promotion_id=None,
                event_type=TYPES[o.kind],
                source_topic=o.source_topic,
                body=body,
                content_type=content_type,
            )
        )
    return out


def _slack_escape(text: str) -> str:
    """Slack reads ``<...>`` as links and mentions (``<!channel>``): send text as text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
