"""Rollback quarantines at ingest (docs/gates.md): a re-announcement of a quarantined set
is refused with 409 unless it says ``force`` (which lifts the quarantine, recording who),
and ``POST /v1/pipelines/{p}/sets/{app_sha}/unquarantine`` (``waveline unquarantine``,
operator token) lifts one. The promoter's gate refuses a quarantined set whatever ingest
answered, so the check here is the early, clear answer, not the only guard."""

from __future__ import annotations

import logging

from aiohttp import web

from waveline.services.ingest.announce_store import AnnounceFacts
from waveline.services.ingest.deliveries import db_call
from waveline.services.ingest.responses import ApiError
from waveline.services.ingest.set_routes import set_request
from waveline.shared import quarantine_store

logger = logging.getLogger(__name__)


def check_announcement(
    pipeline: str, app_sha: str, facts: AnnounceFacts | None, *, actor: str
) -> None:
    """409 ``quarantined`` when ``app_sha`` is quarantined in ``pipeline``; a forced
    announcement's facts lifted it instead, by ``actor`` (logged here). ``facts`` None
    (PostgreSQL away or slow, images.py): the announcement goes on, and the promoter's gate
    still refuses the set."""
    if facts is None:
        return
    if facts.lifted is not None:
        logger.info(
            "pipeline %s: quarantine of %s lifted by %s (forced announcement)",
            pipeline,
            app_sha[:10],
            actor,
        )
    found = facts.in_force
    if found is not None:
        raise ApiError(
            409,
            "quarantined",
            f"image set {app_sha} is quarantined in pipeline {pipeline!r}: rolled back out of"
            f" {found.wave!r} by {found.actor} at {found.since.isoformat(timespec='seconds')}"
            f" ({found.reason}); announce it with force: true, or run"
            f" `waveline unquarantine {pipeline} {app_sha}`",
        )


async def post_unquarantine(request: web.Request) -> web.Response:
    """``POST /v1/pipelines/{pipeline}/sets/{app_sha}/unquarantine`` (operator token, its
    name recorded): 200 with what was lifted; 404 when the set is not quarantined."""
    asked = await set_request(request)
    ctx, name, app_sha = asked.ctx, asked.pipeline, asked.app_sha
    lifted = await db_call(quarantine_store.lift(ctx.runtime.pool, name, app_sha, asked.actor))
    if lifted is None:
        raise ApiError(
            404, "not_quarantined", f"image set {app_sha} is not quarantined in {name!r}"
        )
    logger.info("pipeline %s: quarantine of %s lifted by %s", name, app_sha[:10], asked.actor)
    return web.json_response(
        {
            "pipeline": name,
            "app_sha": app_sha,
            "lifted_by": asked.actor,
            "was": {
                "wave": lifted.wave,
                "actor": lifted.actor,
                "reason": lifted.reason,
                "since": lifted.since.isoformat(timespec="seconds"),
            },
        }
    )
