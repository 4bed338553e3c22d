"""Every SQL statement of the promoter (tables: ``image_sets``, ``promotions``, ``wave_runs``,
``wave_gates``, ``wave_positions``, ``approvals``, ``operator_actions``).

No rule is decided here: the states written and the rows chosen come from ``rules.py`` (and
``trust.py``); the store reads facts and writes what the rules decided. Statements that must
hold together run in a ``Tx`` (``Store.transaction``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

from waveline.services.promoter import rules
from waveline.services.promoter.dispatch import Promotion
from waveline.shared.config import StrategyKind
from waveline.shared.models.images import ImageRef

Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
_TERMINAL = sorted(rules.TERMINAL)


def images_of(raw: str | None) -> dict[str, ImageRef]:
    if not raw:
        return {}
    return {svc: ImageRef.model_validate(ref) for svc, ref in json.loads(raw).items()}


def _promotion(row: asyncpg.Record) -> Promotion:
    return Promotion(
        promotion_id=row["promotion_id"],
        pipeline=row["pipeline"],
        from_wave=row["from_wave"],
        to_wave=row["wave"],
        app_sha=row["app_sha"],
        images=images_of(row["images"]),
        deployed_sha=row["cfg_sha"],
    )


def _facts(row: asyncpg.Record) -> rules.PromotionFacts:
    return rules.PromotionFacts(
        row["promotion_id"], row["app_sha"], row["kind"], row["status"], row["created_at"]
    )


@dataclass(frozen=True)
class Waiting:
    """A promotion waiting at its target wave's gate, with the facts the gate needs."""

    promotion: Promotion
    facts: rules.GateFacts


@dataclass
class Tx:
    """Statements inside one transaction."""

    conn: Conn

    async def record_run(
        self, pipeline: str, wave: str, app_sha: str, cfg_sha: str, since: datetime
    ) -> str | None:
        """Record that the wave runs the set at ``cfg_sha`` (its first run time is kept);
        returns the config commit recorded before (None: its first run)."""
        before: str | None = await self.conn.fetchval(
            "WITH before AS (SELECT cfg_sha FROM wave_runs"
            "  WHERE pipeline = $1 AND wave = $2 AND app_sha = $3 FOR UPDATE),"
            " up AS (INSERT INTO wave_runs (pipeline, wave, app_sha, cfg_sha, since)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pipeline, wave, app_sha) DO UPDATE"
            " SET cfg_sha = EXCLUDED.cfg_sha)"
            " SELECT cfg_sha FROM before",
            pipeline,
            wave,
            app_sha,
            cfg_sha,
            since,
        )
        return before

    async def into_wave(
        self, pipeline: str, wave: str, app_sha: str, states: Sequence[str]
    ) -> list[rules.PromotionFacts]:
        """Promotions into ``wave`` of ``app_sha`` (any state) or in one of ``states``,
        locked until the transaction ends."""
        rows = await self.conn.fetch(
            "SELECT promotion_id, app_sha, kind, status, created_at FROM promotions"
            " WHERE pipeline = $1 AND wave = $2 AND (app_sha = $3 OR status = ANY($4::text[]))"
            " ORDER BY created_at FOR UPDATE",
            pipeline,
            wave,
            app_sha,
            list(states),
        )
        return [_facts(r) for r in rows]

    async def move(
        self, ids: Sequence[uuid.UUID], to: rules.PromotionState, only_from: Sequence[str]
    ) -> None:
        """Set ``ids`` to state ``to``, those still in one of ``only_from``."""
        if ids:
            await self.conn.execute(
                "UPDATE promotions SET status = $2, updated_at = now()"
                " WHERE promotion_id = ANY($1::uuid[]) AND status = ANY($3::text[])",
                list(ids),
                to,
                list(only_from),
            )

    async def create_promotion(
        self, p: Promotion, state: rules.PromotionState, strategy: StrategyKind
    ) -> None:
        """Insert a forward promotion (a redelivery inserts nothing: promotions_once)."""
        await self.conn.execute(
            "INSERT INTO promotions"
            " (promotion_id, pipeline, wave, from_wave, app_sha, kind, status, cfg_sha, strategy)"
            " VALUES ($1, $2, $3, $4, $5, 'promote', $6, $7, $8) ON CONFLICT DO NOTHING",
            p.promotion_id,
            p.pipeline,
            p.to_wave,
            p.from_wave,
            p.app_sha,
            state,
            p.deployed_sha,
            strategy,
        )


@dataclass
class Store:
    # The pool opens when the service starts, after the store is made: asked for each use.
    pool_of: Callable[[], asyncpg.Pool]

    @property
    def pool(self) -> asyncpg.Pool:
        return self.pool_of()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield Tx(conn)

    async def block_waiting(self, pipeline: str, from_wave: str) -> None:
        """Promotions from ``from_wave`` waiting at the next gate become blocked."""
        await self.pool.execute(
            "UPDATE promotions SET status = $3, updated_at = now()"
            " WHERE pipeline = $1 AND from_wave = $2 AND status = $4",
            pipeline,
            from_wave,
            "blocked",
            "waiting",
        )

    async def promotion(self, pid: uuid.UUID) -> Promotion | None:
        row = await self.pool.fetchrow(
            "SELECT p.promotion_id, p.pipeline, p.wave, p.from_wave, p.app_sha, p.cfg_sha,"
            " i.images FROM promotions p LEFT JOIN image_sets i"
            " ON i.pipeline = p.pipeline AND i.app_sha = p.app_sha WHERE p.promotion_id = $1",
            pid,
        )
        return _promotion(row) if row else None

    async def strategies(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, StrategyKind]:
        rows = await self.pool.fetch(
            "SELECT promotion_id, strategy FROM promotions WHERE promotion_id = ANY($1::uuid[])",
            list(ids),
        )
        return {r["promotion_id"]: r["strategy"] for r in rows}

    async def waiting(self, pipeline: str | None) -> list[Waiting]:
        """Forward promotions waiting at a gate (of ``pipeline``, or all), oldest first."""
        rows = await self.pool.fetch(
            "SELECT p.promotion_id, p.pipeline, p.wave, p.from_wave, p.app_sha, p.cfg_sha,"
            " p.created_at, r.since, coalesce(g.held, false) AS held,"
            " a.promotion_id IS NOT NULL AS approved, i.images"
            " FROM promotions p"
            " LEFT JOIN image_sets i ON i.pipeline = p.pipeline AND i.app_sha = p.app_sha"
            " JOIN wave_runs r ON r.pipeline = p.pipeline AND r.wave = p.from_wave"
            "  AND r.app_sha = p.app_sha"
            " LEFT JOIN wave_gates g ON g.pipeline = p.pipeline AND g.wave = p.wave"
            " LEFT JOIN approvals a ON a.promotion_id = p.promotion_id"
            " WHERE p.status = $2 AND p.kind = 'promote'"
            " AND ($1::text IS NULL OR p.pipeline = $1)"
            " ORDER BY p.created_at",
            pipeline,
            "waiting",
        )
        return [
            Waiting(
                _promotion(r),
                rules.GateFacts(
                    app_sha=r["app_sha"],
                    from_wave=r["from_wave"],
                    since=r["since"],
                    approved=r["approved"],
                    held=r["held"],
                    pipeline=r["pipeline"],
                    created_at=r["created_at"],
                ),
            )
            for r in rows
        ]

    async def mark_requested(self, pid: uuid.UUID, strategy: StrategyKind) -> None:
        await self.pool.execute(
            "UPDATE promotions SET status = $3, strategy = $2, updated_at = now()"
            " WHERE promotion_id = $1 AND status = $4",
            pid,
            strategy,
            "requested",
            "waiting",
        )

    async def report_state(
        self,
        pid: uuid.UUID,
        state: rules.PromotionState,
        *,
        url: str | None = None,
        detail: str | None = None,
        where: tuple[str, str] | None = None,
        replace_detail: bool = False,
    ) -> StrategyKind | None:
        """Move promotion ``pid`` (into ``where``: pipeline and wave, when given) to
        ``state`` unless it already ended; returns its strategy when it is in ``state`` now
        (moved, or already there: a redelivery after a failed publish), else None. ``url``
        and ``detail`` are kept when not given, unless ``replace_detail``."""
        pipeline, wave = where if where else (None, None)
        found: StrategyKind | None = await self.pool.fetchval(
            "WITH moved AS (UPDATE promotions SET status = $2, url = coalesce($3, url),"
            " detail = CASE WHEN $8 THEN $4 ELSE coalesce($4, detail) END, updated_at = now()"
            " WHERE promotion_id = $1 AND ($6::text IS NULL OR (pipeline = $6 AND wave = $7))"
            " AND status <> ALL($5::text[]) RETURNING strategy)"
            " SELECT strategy FROM moved UNION ALL"
            " SELECT strategy FROM promotions WHERE promotion_id = $1 AND status = $2"
            " AND ($6::text IS NULL OR (pipeline = $6 AND wave = $7))",
            pid,
            state,
            url,
            detail,
            _TERMINAL,
            pipeline,
            wave,
            replace_detail,
        )
        return found

    async def runs(self, pipeline: str, wave: str) -> list[rules.WaveRun]:
        rows = await self.pool.fetch(
            "SELECT app_sha, cfg_sha, since FROM wave_runs WHERE pipeline = $1 AND wave = $2",
            pipeline,
            wave,
        )
        return [rules.WaveRun(r["app_sha"], r["cfg_sha"], r["since"]) for r in rows]

    async def running_set(self, pipeline: str, wave: str) -> str | None:
        """The set the status-tracker last said ``wave`` runs (None: none, or failing)."""
        running = await self.running_since(pipeline, wave)
        return None if running is None else running[0]

    async def running_since(self, pipeline: str, wave: str) -> tuple[str, datetime] | None:
        """``running_set`` and since when the wave runs it."""
        row = await self.pool.fetchrow(
            "SELECT app_sha, since FROM wave_status WHERE pipeline = $1 AND wave = $2"
            " AND state = 'running' AND app_sha IS NOT NULL",
            pipeline,
            wave,
        )
        return None if row is None else (str(row["app_sha"]), row["since"])

    async def create_rollback(
        self, command_id: uuid.UUID, pipeline: str, wave: str, run: rules.WaveRun
    ) -> None:
        await self.pool.execute(
            "INSERT INTO promotions (promotion_id, pipeline, wave, app_sha, kind, status, cfg_sha)"
            " VALUES ($1, $2, $3, $4, 'rollback', $5, $6) ON CONFLICT DO NOTHING",
            command_id,
            pipeline,
            wave,
            run.app_sha,
            "requested",
            run.cfg_sha,
        )
