"""One pipeline's state as operators see it: the body of ``GET /v1/pipelines/{p}`` and the
dashboard page (README.md, Operating it).

Read-only SQL over the tables the status-tracker and the promoter own (``wave_status``,
``wave_gates``, ``promotions``, ``wave_runs``, ``approvals``, ``image_sets``,
``operator_actions``, ``auto_commits``, ``commit_checks``) and the notifier
(``deliveries``, ``delivery_attempts``, ``pull_requests``); ingest never writes them. It
also lists the last deliveries ingest ignored for the pipeline's repo (``ignored_store``).
Actors are token names (docs/security.md, Tokens, roles and actors).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from waveline.services.ingest import ignored_store, pipeline_store
from waveline.services.ingest.gate_view import wave_gates
from waveline.services.ingest.view_rules import (
    Flight,
    exact,
    on_watched,
    quorum,
    superseded,
)
from waveline.services.promoter.rules import PromotionFacts
from waveline.shared import quarantine_store
from waveline.shared.config import PipelineConfig
from waveline.shared.models.base import utcnow

logger = logging.getLogger(__name__)

# Each wave lists its newest LISTED unfinished promotions (and every waiting or blocked one:
# the gates; few, since a newer set supersedes a waiting one), and the
# pending commits their newest LISTED. Under a steady flow of sets, promotions a newer set
# overtook stay unfinished, as do commits that get no check of their own, until retention
# prunes them (docs/reliability.md): unbounded, the answer, built in memory for every
# request and dashboard refresh, grew with them (10.8 MB after 3 minutes at 100 sets/s).
LISTED = 100
# Each wave lists its newest operator actions, this many.
ACTIONS = 5


async def pipeline_snapshot(
    pool: asyncpg.Pool, name: str, pipeline: PipelineConfig, *, forge_name: str | None = None
) -> dict[str, Any]:
    """The JSON-ready state of pipeline ``name``.

    ``{"pipeline", "repo", "now", "waves": [...], "pending_commits": [...], "timeline"}``:
    each wave in config order with its targets, state (``unknown`` before the first report)
    and ``since`` (ISO to the second), the image set it runs and the config commit,
    ``quorum`` (a ``min_healthy`` wave: required, targets, the ones not counted; else null),
    its gate (``verdicts``: why it is closed, as the promoter's rules say, see gate_view;
    ``held``, ``held_by``; while a promotion into it waits: ``bake_remaining_s`` and
    ``awaiting_approval``) and the promotions into it not yet done (its newest ``LISTED``,
    and every waiting or blocked one; one a newer landed set overtook has status
    ``superseded`` and ``superseded_by``, view_rules.superseded); then Waveline's commits
    on ``auto`` still awaiting a verdict and not on ``watched`` (the newest ``LISTED``),
    with the latest state of each check context; ``evictions``: the last commits evicted
    from ``auto`` and whether their set was retried; ``quarantined``: the sets a rollback
    quarantined, still in force (docs/gates.md); ``timeline``: the last promotions
    changed, newest first. Who did what: each wave's running set and each promotion's set name
    ``announced_by``, a promotion ``approved_by``, a wave its newest ``actions`` (action,
    actor, detail, at); an actor is null for a set produced straight to Kafka without one.
    ``ignored_deliveries``: the last GitHub delivery per reason that changed nothing for the
    repo, and those about unknown repositories named like ``forge_name`` (the repo's name on
    the forge; default: its config key), newest first.
    """
    status = {
        r["wave"]: r
        for r in await pool.fetch(
            "SELECT wave, state, app_sha, cfg_sha, since, lagging FROM wave_status"
            " WHERE pipeline = $1",
            name,
        )
    }
    held = {
        r["wave"]
        for r in await pool.fetch("SELECT wave FROM wave_gates WHERE pipeline = $1 AND held", name)
    }
    announced_by = {
        r["app_sha"]: r["actor"]
        for r in await pool.fetch(
            "SELECT app_sha, actor FROM image_sets WHERE pipeline = $1 AND app_sha = ANY($2)",
            name,
            [r["app_sha"] for r in status.values() if r["app_sha"]],
        )
    }
    actions = await pool.fetch(
        "SELECT wave, action, actor, detail, recorded_at FROM (SELECT *, row_number() OVER"
        " (PARTITION BY wave ORDER BY recorded_at DESC) AS newest FROM operator_actions"
        " WHERE pipeline = $1) q WHERE newest <= $2 ORDER BY recorded_at DESC",
        name,
        ACTIONS,
    )
    held_by = {
        r["wave"]: r["actor"]
        for r in await pool.fetch(
            "SELECT DISTINCT ON (wave) wave, action, actor FROM operator_actions"
            " WHERE pipeline = $1 AND action IN ('hold', 'release')"
            " ORDER BY wave, recorded_at DESC",
            name,
        )
        if r["action"] == "hold"
    }
    promotions = await pool.fetch(
        "WITH listed AS (SELECT * FROM (SELECT p.*, row_number() OVER"
        " (PARTITION BY p.wave ORDER BY p.created_at DESC) AS newest FROM promotions p"
        " WHERE p.pipeline = $1"
        " AND p.status IN ('waiting', 'requested', 'blocked', 'opened', 'delivered')) q"
        " WHERE q.newest <= $2 OR q.status IN ('waiting', 'blocked'))"
        " SELECT p.promotion_id, p.wave, p.from_wave, p.app_sha, p.status, p.cfg_sha, r.since,"
        " p.created_at, p.kind,"
        " a.promotion_id IS NOT NULL AS approved, i.images, p.strategy, p.url, p.detail,"
        " i.actor AS announced_by, a.actor AS approved_by"
        " FROM listed p"
        " LEFT JOIN wave_runs r ON r.pipeline = p.pipeline AND r.wave = p.from_wave"
        "  AND r.app_sha = p.app_sha"
        " LEFT JOIN approvals a ON a.promotion_id = p.promotion_id"
        " LEFT JOIN image_sets i ON i.pipeline = p.pipeline AND i.app_sha = p.app_sha"
        " ORDER BY p.created_at",
        name,
        LISTED,
    )
    now = utcnow()
    recent = await pipeline_store.recent_promotions(pool, name)
    mark = await pipeline_store.watched_mark(pool, pipeline.repo)
    overtaken = await _superseded(pool, name, pipeline.repo, [*promotions, *recent], mark)
    verdicts = await wave_gates(
        pool,
        name,
        pipeline,
        [dict(p) for p in promotions if p["status"] == "waiting"],
        held_by={w: held_by.get(w) for w in held},
        now=now,
    )
    waves: list[dict[str, Any]] = []
    for wave in pipeline.waves:
        row = status.get(wave.name)
        gate: dict[str, Any] = {"held": wave.name in held}
        if wave.name in held:
            gate["held_by"] = held_by.get(wave.name)
        pending = [p for p in promotions if p["wave"] == wave.name]
        for p in pending:
            if p["status"] == "waiting" and p["since"] is not None:
                remaining = (p["since"] + wave.gate.bake - now).total_seconds()
                gate["bake_remaining_s"] = max(0.0, round(remaining, 1))
                gate["awaiting_approval"] = wave.gate.approval and not p["approved"]
        gate["verdicts"] = verdicts[wave.name]
        waves.append(
            {
                "name": wave.name,
                "targets": list(wave.targets),
                "strategy": pipeline.strategy_of(wave.name).kind,
                "state": row["state"] if row else "unknown",
                "app_sha": row["app_sha"] if row else None,
                "announced_by": announced_by.get(row["app_sha"]) if row else None,
                "cfg_commit": row["cfg_sha"] if row else None,
                "since": exact(row["since"]) if row else None,
                "quorum": quorum(wave, list(row["lagging"]) if row else []),
                "gate": gate,
                "promotions": [
                    {
                        "promotion_id": str(p["promotion_id"]),
                        "from_wave": p["from_wave"],
                        "app_sha": p["app_sha"],
                        "status": "superseded" if p["promotion_id"] in overtaken else p["status"],
                        "superseded_by": overtaken.get(p["promotion_id"]),
                        "strategy": p["strategy"],
                        "url": p["url"],
                        "detail": p["detail"],
                        "images": json.loads(p["images"]) if p["images"] else None,
                        "announced_by": p["announced_by"],
                        "approved_by": p["approved_by"],
                    }
                    for p in pending
                ],
                "actions": [
                    {
                        "action": a["action"],
                        "actor": a["actor"],
                        "detail": a["detail"],
                        "at": exact(a["recorded_at"]),
                    }
                    for a in actions
                    if a["wave"] == wave.name
                ],
            }
        )
    commits = await pool.fetch(
        "WITH listed AS (SELECT repo, sha, wave, app_sha, state, created_at FROM auto_commits"
        " WHERE repo = $1 AND state = 'pending' ORDER BY created_at DESC LIMIT $2)"
        " SELECT a.sha, a.wave, a.app_sha, a.state, a.created_at,"
        " coalesce(json_object_agg(c.context, c.state) FILTER (WHERE c.context IS NOT NULL),"
        " '{}')::text AS checks"
        " FROM listed a LEFT JOIN commit_checks c ON c.repo = a.repo AND c.sha = a.sha"
        " GROUP BY a.sha, a.wave, a.app_sha, a.state, a.created_at ORDER BY a.created_at",
        pipeline.repo,
        LISTED,
    )
    return {
        "pipeline": name,
        "repo": pipeline.repo,
        "now": exact(now),
        "waves": waves,
        "pending_commits": [
            {
                "sha": c["sha"],
                "wave": c["wave"],
                "app_sha": c["app_sha"],
                "checks": json.loads(c["checks"]),
            }
            for c in commits
            if not on_watched(c["created_at"], mark)
        ],
        "evictions": await pipeline_store.evictions(pool, name),
        "quarantined": [
            {
                "app_sha": q.app_sha,
                "wave": q.wave,
                "actor": q.actor,
                "reason": q.reason,
                "since": exact(q.since),
            }
            for q in await quarantine_store.all_in_force(pool, name)
        ],
        "timeline": [
            {
                **pipeline_store.timeline_entry(r),
                "status": "superseded" if r["promotion_id"] in overtaken else r["status"],
                "superseded_by": overtaken.get(r["promotion_id"]),
            }
            for r in recent[: pipeline_store.TIMELINE]
        ],
        "pull_requests": [
            {
                "number": r["number"],
                "url": r["url"],
                "wave": r["wave"],
                "app_sha": r["app_sha"],
                "state": r["state"],
                "promotion_id": str(r["promotion_id"]),
            }
            for r in await pool.fetch(
                "SELECT number, url, wave, app_sha, state, promotion_id FROM pull_requests"
                " WHERE pipeline = $1 ORDER BY updated_at DESC LIMIT 10",
                name,
            )
        ],
        "deliveries": await pipeline_store.deliveries(pool, name),
        "ignored_deliveries": await ignored_store.latest(
            pool, pipeline.repo, forge_name or pipeline.repo
        ),
    }


async def _superseded(
    pool: asyncpg.Pool,
    name: str,
    repo: str,
    rows: list[asyncpg.Record],
    mark: datetime | None,
) -> dict[uuid.UUID, str]:
    """``{promotion_id: newer app_sha}`` for the promotions in ``rows`` a newer landed set
    overtook (view_rules.superseded): landed is done, or a commit on ``watched``."""
    unique = {r["promotion_id"]: r for r in rows}
    pairs = sorted({(r["wave"], r["app_sha"]) for r in unique.values() if r["status"] != "done"})
    commits = await pipeline_store.commits_of(pool, repo, name, pairs)
    flights = [
        Flight(
            facts=PromotionFacts(
                promotion_id=pid,
                app_sha=r["app_sha"],
                kind=r["kind"],
                state=r["status"],
                created_at=r["created_at"],
            ),
            wave=r["wave"],
            landed=r["status"] == "done"
            or _on_watched(commits.get((r["wave"], r["app_sha"])), mark),
        )
        for pid, r in unique.items()
    ]
    return superseded(flights)


def _on_watched(committed: datetime | None, mark: datetime | None) -> bool:
    return committed is not None and on_watched(committed, mark)
