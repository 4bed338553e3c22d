"""Rollback quarantines at ingest (docs/gates.md): a re-announcement of a quarantined set
is refused with 409 unless it says ``force`` (which lifts the quarantine, recording who),
and ``POST /v1/pipelines/{p}/sets/{app_sha}/unquarantine`` (``waveline unquarantine``,
operator token) lifts one. The promoter's gate refuses a quarantined set whatever ingest
answered, so the check here is the early, clear answer, not the only guard."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.deliveries import db_call
from waveline.services.ingest.responses import ApiError
from waveline.services.ingest.set_routes import set_request
from waveline.shared import quarantine_store
from waveline.shared.outage import is_retriable

logger = logging.getLogger(__name__)

# As for retries (retry.py): the announcement path does not wait longer than this.
ANNOUNCE_LOOKUP_S = 1.0


async def check_announcement(
    ctx: IngestContext, pipeline: str, app_sha: str, *, force: bool, actor: str | None
) -> None:
    """409 ``quarantined`` when ``app_sha`` is quarantined in ``pipeline`` and not
    ``force``; with ``force``, the quarantine is lifted by ``actor``. PostgreSQL away: the
    announcement goes on (logged), and the promoter's gate still refuses the set."""
    pool = ctx.runtime.pool
    try:
        async with asyncio.timeout(ANNOUNCE_LOOKUP_S):
            if force:
                lifted = await quarantine_store.lift(pool, pipeline, app_sha, actor or "ci")
                if lifted is not None:
                    logger.info(
                        "pipeline %s: quarantine of %s lifted by %s (forced announcement)",
                        pipeline,
                        app_sha[:10],
                        actor,
                    )
                return
            found = (await quarantine_store.in_force(pool, pipeline, [app_sha])).get(app_sha)
    except Exception as exc:
        if not is_retriable(exc):
            raise
        logger.warning("pipeline %s: quarantine of %s not read: %s", pipeline, app_sha, exc)
        return
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
