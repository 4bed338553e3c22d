"""What the promoter checks and records about who acts (docs/security.md, Tokens, roles and
actors): an announcement on ``waveline.images`` naming an image outside its pipeline's
``allowed_images`` is refused (dead-lettered with the reason, never introduced), whoever
produced it; every operator action carried out is recorded with its actor.
"""

from __future__ import annotations

from waveline.services.promoter.store_gates import GateStore
from waveline.shared.auth_rules import images_refused
from waveline.shared.config import WavelineConfig
from waveline.shared.errors import InvalidMessage
from waveline.shared.models.images import ImageSetAnnounced
from waveline.shared.models.operator import OperatorCommand


class ImageNotAllowed(InvalidMessage):
    """An announcement names an image its pipeline's ``allowed_images`` does not allow.
    Permanent: the message goes to the dead-letter topic."""

    code = "image_not_allowed"


def check_images(config: WavelineConfig, announced: ImageSetAnnounced) -> None:
    """Raise ``ImageNotAllowed`` naming each refused service and repository. A pipeline the
    config does not define is left to the handler (``UnknownPipeline``)."""
    pipeline = config.pipelines.get(announced.pipeline)
    if pipeline is None:
        return
    refused = images_refused(pipeline.allowed_images, announced.images)
    if refused:
        named = ", ".join(f"{s}: {r}" for s, r in sorted(refused.items()))
        raise ImageNotAllowed(
            f"image set {announced.app_sha} of pipeline {announced.pipeline!r} names images"
            f" outside its allowed_images ({named})"
        )


def _detail(cmd: OperatorCommand) -> str | None:
    if cmd.action == "rollback":
        return f"to {cmd.to or 'previous'}"
    if cmd.action == "result":
        return f"promotion {cmd.promotion_id} {cmd.result}"
    return None


async def record_action(store: GateStore, cmd: OperatorCommand) -> None:
    """Record ``cmd`` as carried out by ``cmd.actor``; a redelivery records nothing new."""
    await store.record_action(cmd, _detail(cmd))
