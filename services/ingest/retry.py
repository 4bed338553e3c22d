"""Retry after eviction (docs/gates.md): a re-announced image set, or
``POST /v1/pipelines/{p}/sets/{app_sha}/retry`` (``waveline retry``), whose newest attempt
was evicted from ``auto`` becomes a new attempt: a git command of its own (own Event-Id,
``Waveline-Attempt: N``) sent straight to the git-writer, the promoter having nothing to
decide (the set, its first wave and its images are the first attempt's). The rule is
``attempts.decide``; this module only gathers its facts and sends what it decides."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from waveline.services.git_writer.attempts import Decision, SetFacts, command_id, decide
from waveline.services.ingest import retry_store
from waveline.services.ingest.announce_store import KnownImages
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.deliveries import db_call
from waveline.services.ingest.responses import ApiError
from waveline.services.ingest.set_routes import set_request
from waveline.shared.models.base import utcnow
from waveline.shared.models.git import IntroduceImages
from waveline.shared.outage import is_retriable

logger = logging.getLogger(__name__)

# The announcement path does not wait longer than this for each of its PostgreSQL reads (the
# announcement's facts, images.py; a re-announced set's retry facts, here): CI's announcement
# is accepted (as before quarantines and retries existed) when they cannot be read.
ANNOUNCE_LOOKUP_S = 1.0


async def request_attempt(
    ctx: IngestContext,
    pipeline: str,
    app_sha: str,
    *,
    actor: str | None,
    source: str,
    recorded: KnownImages | None = None,
) -> Decision:
    """Decide on the set and, for a new attempt, send its command and record who asked.
    ``recorded``: the set's images and newest attempt, already read (an announcement's
    facts, announce_store.py), so only where that attempt is remains to read."""
    config = ctx.runtime.config.pipelines[pipeline]
    wave = config.waves[0].name
    strategy = config.strategy_of(wave).kind
    pool = ctx.runtime.pool
    if recorded is None:
        known = await retry_store.known_set(
            pool, config.repo, pipeline, wave, app_sha, strategy=strategy
        )
    else:
        cid = command_id(pipeline, wave, app_sha, recorded.attempt)
        place = await retry_store.place_of(pool, config.repo, cid)
        known = retry_store.KnownSet(
            SetFacts(announced=True, attempt=recorded.attempt, place=place, strategy=strategy),
            recorded.images,
        )
    decision = decide(known.facts)
    if not decision.retries:
        return decision
    cid = command_id(pipeline, wave, app_sha, decision.attempt)
    command = IntroduceImages.model_validate(
        {
            "command_id": cid,
            "repo": config.repo,
            "issued_at": utcnow(),
            "pipeline": pipeline,
            "wave": wave,
            "app_sha": app_sha,
            "images": known.images,
            "attempt": decision.attempt,
        }
    )
    # Sent before it is recorded: a request that fails in between is asked again, and the
    # same attempt is the same command (the git-writer makes it once).
    await ctx.publish(command, ctx.runtime.topics.git_commands, key=config.repo, route="retry")
    await retry_store.record_attempt(
        pool, pipeline, app_sha, decision.attempt, cid, actor=actor, source=source
    )
    logger.info(
        "pipeline %s: image set %s attempt %d requested by %s (%s)",
        pipeline,
        app_sha[:10],
        decision.attempt,
        actor,
        source,
    )
    return decision


def answer(decision: Decision) -> dict[str, Any]:
    return {"outcome": decision.outcome, "attempt": decision.attempt, "detail": decision.why}


async def on_announced(
    ctx: IngestContext, pipeline: str, app_sha: str, actor: str | None, recorded: KnownImages | None
) -> dict[str, Any]:
    """What a published announcement did besides being published: a new attempt, or why
    not. ``recorded`` is what was read before publishing (None: a set never recorded, a
    first announcement, or PostgreSQL not read): only a set announced before is decided on,
    and PostgreSQL away leaves it at ``announced`` (logged)."""
    first = {"outcome": "announced", "attempt": 1}
    if recorded is None:
        return first
    try:
        async with asyncio.timeout(ANNOUNCE_LOOKUP_S):
            decision = await request_attempt(
                ctx, pipeline, app_sha, actor=actor, source="announce", recorded=recorded
            )
    except Exception as exc:
        if not is_retriable(exc):
            raise
        logger.warning("pipeline %s: retry facts of %s not read: %s", pipeline, app_sha, exc)
        return first
    return answer(decision)


async def post_retry(request: web.Request) -> web.Response:
    """``POST /v1/pipelines/{pipeline}/sets/{app_sha}/retry`` (operator token; its name is
    recorded as the actor): 202 with the new attempt; 404 for a set never announced; 409
    when its newest attempt was not evicted (the detail says where it is)."""
    asked = await set_request(request)
    ctx, name, app_sha = asked.ctx, asked.pipeline, asked.app_sha
    decision = await db_call(request_attempt(ctx, name, app_sha, actor=asked.actor, source="retry"))
    if decision.outcome == "unknown":
        raise ApiError(404, "unknown_image_set", f"{decision.why} in pipeline {name!r}")
    if not decision.retries:
        raise ApiError(409, "not_evicted", decision.why)
    return web.json_response(
        {
            **answer(decision),
            "event_id": str(
                command_id(
                    name,
                    ctx.runtime.config.pipelines[name].waves[0].name,
                    app_sha,
                    decision.attempt,
                )
            ),
        },
        status=202,
    )
