"""``POST /v1/images`` and ``POST /v1/pipelines/{p}/images``: CI announces an image set."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from aiohttp import web

from waveline.services.ingest import announce_store
from waveline.services.ingest.announce_store import AnnounceFacts
from waveline.services.ingest.auth import Caller, caller
from waveline.services.ingest.body import read_json, validate
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.quarantine_http import check_announcement
from waveline.services.ingest.responses import ApiError
from waveline.services.ingest.retry import ANNOUNCE_LOOKUP_S, on_announced
from waveline.shared.auth_rules import images_refused
from waveline.shared.models.base import utcnow
from waveline.shared.models.images import ImageSetAnnounced
from waveline.shared.outage import is_retriable

logger = logging.getLogger(__name__)


def _validate(ctx: IngestContext, ci: Caller, doc: dict[str, Any]) -> ImageSetAnnounced:
    """The announcement as ingest publishes it: the token's scope checked (403, before the
    pipeline's existence), its images against ``allowed_images`` (422), and the server's
    fields set, the actor being the token's name (any sent by the client is dropped)."""
    pipeline = doc.get("pipeline")
    if isinstance(pipeline, str):
        ci.on(pipeline)
        if pipeline not in ctx.runtime.config.pipelines:
            raise ApiError(404, "unknown_pipeline", f"no pipeline named {pipeline!r}")
    for server_field in ("event_id", "received_at", "source", "actor"):
        doc.pop(server_field, None)
    announced = validate(ImageSetAnnounced, doc)
    actor = ci.on(announced.pipeline).name
    allowed = ctx.runtime.config.pipelines[announced.pipeline].allowed_images
    refused = images_refused(allowed, announced.images)
    if refused:
        raise ApiError(
            422,
            "image_not_allowed",
            [
                {
                    "field": f"images.{service}",
                    "reason": f"repository {repository!r} is not in the pipeline's allowed_images",
                }
                for service, repository in sorted(refused.items())
            ],
        )
    return announced.model_copy(
        update={"event_id": uuid.uuid4(), "received_at": utcnow(), "source": "http", "actor": actor}
    )


def _force(value: object) -> bool:
    """The request's ``force`` (a set quarantined by a rollback is announced anyway, its
    quarantine lifted): a JSON boolean, or ``true``/``false`` in the query."""
    if value in (None, False, "false"):
        return False
    if value in (True, "true"):
        return True
    raise ApiError(422, "invalid_field", [{"field": "force", "reason": "must be true or false"}])


async def _facts(
    ctx: IngestContext, announced: ImageSetAnnounced, *, force: bool
) -> AnnounceFacts | None:
    """The set's quarantine and whether it was recorded, read (forced: its quarantine
    lifted) in one statement before the announcement is published, so the promoter handling
    this very announcement cannot make a first announcement look like a second. None when
    PostgreSQL is away or slow (logged)."""
    lift_by = (announced.actor or "ci") if force else None
    try:
        async with asyncio.timeout(ANNOUNCE_LOOKUP_S):
            return await announce_store.announce_facts(
                ctx.runtime.pool, announced.pipeline, announced.app_sha, lift_by=lift_by
            )
    except Exception as exc:
        if not is_retriable(exc):
            raise
        logger.warning(
            "pipeline %s: quarantine and attempts of %s not read (announced all the same): %s",
            announced.pipeline,
            announced.app_sha,
            exc,
        )
        return None


async def _accept(
    ctx: IngestContext, announced: ImageSetAnnounced, route: str, *, force: bool
) -> web.Response:
    """Refused (409) when the set is quarantined and not forced (quarantine_http.py);
    published, then, for a set announced before, whether it makes a new attempt (its last
    one evicted) or changes nothing (retry.py): ``outcome`` and ``attempt`` say which."""
    assert announced.event_id is not None
    facts = await _facts(ctx, announced, force=force)
    check_announcement(announced.pipeline, announced.app_sha, facts, actor=announced.actor or "ci")
    await ctx.publish(announced, ctx.runtime.topics.images, key=announced.pipeline, route=route)
    retried = await on_announced(
        ctx,
        announced.pipeline,
        announced.app_sha,
        announced.actor,
        None if facts is None else facts.known,
    )
    return web.json_response({"event_id": str(announced.event_id), **retried}, status=202)


async def post_images(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    ci = caller(request, "ci", what="CI token")
    doc = await read_json(request)
    forced = doc.pop("force", None)
    announced = _validate(ctx, ci, doc)
    return await _accept(ctx, announced, "images", force=_force(forced))


async def post_pipeline_images(request: web.Request) -> web.Response:
    """The bare ``{svc: {"Digest", "Tag"}}`` object, exactly as a CI script writes it."""
    ctx = IngestContext.of(request)
    ci = caller(request, "ci", what="CI token")
    pipeline = request.match_info["pipeline"]
    ci.on(pipeline)
    if pipeline not in ctx.runtime.config.pipelines:
        raise ApiError(404, "unknown_pipeline", f"no pipeline named {pipeline!r}")
    app_sha = request.query.get("app_sha")
    if not app_sha:
        raise ApiError(
            422, "invalid_field", [{"field": "app_sha", "reason": "query parameter required"}]
        )
    images = await read_json(request)
    doc: dict[str, Any] = {"pipeline": pipeline, "app_sha": app_sha, "images": images}
    committed_at = request.query.get("app_committed_at")
    if committed_at:  # the app commit's time (docs/dora.md), validated with the body
        doc["app_committed_at"] = committed_at
    announced = _validate(ctx, ci, doc)
    return await _accept(
        ctx, announced, "pipeline_images", force=_force(request.query.get("force"))
    )
