"""The promoter's SQL about operator gates and actions (tables ``wave_gates``, ``approvals``,
``wave_positions``, ``operator_actions``), apart from ``store.py`` to keep each module
small. As there, the rules (``trust.py``, ``rules.py``) decide; this reads and writes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from waveline.services.promoter.store import Conn
from waveline.services.promoter.trust import Gate
from waveline.shared.models.operator import OperatorCommand


@dataclass
class GateTx:
    """Gate statements inside one transaction."""

    conn: Conn

    async def approval_subject(
        self, pipeline: str, wave: str, app_sha: str
    ) -> asyncpg.Record | None:
        """The forward promotion of ``app_sha`` into ``wave`` (or its introduction into the
        first wave, which only a freeze holds; locked) and whether it is
        approved: ``promotion_id``, ``status``, ``approved``."""
        row: asyncpg.Record | None = await self.conn.fetchrow(
            "SELECT p.promotion_id, p.status, a.promotion_id IS NOT NULL AS approved"
            " FROM promotions p LEFT JOIN approvals a USING (promotion_id)"
            " WHERE p.pipeline = $1 AND p.wave = $2 AND p.app_sha = $3"
            " AND p.kind IN ('promote', 'introduce')"
            " FOR UPDATE OF p",
            pipeline,
            wave,
            app_sha,
        )
        return row

    async def approve(self, promotion_id: uuid.UUID, actor: str | None) -> None:
        await self.conn.execute(
            "INSERT INTO approvals (promotion_id, actor) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            promotion_id,
            actor,
        )

    async def wave_gate(self, pipeline: str, wave: str) -> Gate | None:
        """The wave's hold state, locked until the transaction ends."""
        row = await self.conn.fetchrow(
            "SELECT held, hold_id, changed_at FROM wave_gates"
            " WHERE pipeline = $1 AND wave = $2 FOR UPDATE",
            pipeline,
            wave,
        )
        return Gate(row["held"], row["hold_id"], row["changed_at"]) if row else None

    async def set_hold(
        self,
        pipeline: str,
        wave: str,
        *,
        held: bool,
        hold_id: uuid.UUID | None,
        app_sha: str | None,
        changed_at: datetime,
    ) -> None:
        await self.conn.execute(
            "INSERT INTO wave_gates (pipeline, wave, held, hold_id, held_app_sha, changed_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline, wave) DO UPDATE"
            " SET held = EXCLUDED.held, hold_id = EXCLUDED.hold_id,"
            " held_app_sha = EXCLUDED.held_app_sha,"
            " changed_at = greatest(wave_gates.changed_at, EXCLUDED.changed_at)",
            pipeline,
            wave,
            held,
            hold_id,
            app_sha,
            changed_at,
        )


@dataclass
class GateStore:
    # The pool opens when the service starts, after the store is made: asked for each use.
    pool_of: Callable[[], asyncpg.Pool]

    @property
    def pool(self) -> asyncpg.Pool:
        return self.pool_of()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[GateTx]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield GateTx(conn)

    async def applied_position(self, pipeline: str, wave: str) -> int | None:
        """The newest watched position applied for ``wave``."""
        found: int | None = await self.pool.fetchval(
            "SELECT cfg_position FROM wave_positions WHERE pipeline = $1 AND wave = $2",
            pipeline,
            wave,
        )
        return found

    async def record_position(self, pipeline: str, wave: str, position: int) -> None:
        await self.pool.execute(
            "INSERT INTO wave_positions (pipeline, wave, cfg_position) VALUES ($1, $2, $3)"
            " ON CONFLICT (pipeline, wave) DO UPDATE"
            " SET cfg_position = greatest(wave_positions.cfg_position, EXCLUDED.cfg_position)",
            pipeline,
            wave,
            position,
        )

    async def record_action(self, cmd: OperatorCommand, detail: str | None) -> None:
        """Record ``cmd`` as carried out by its actor; a redelivery records nothing new."""
        await self.pool.execute(
            "INSERT INTO operator_actions"
            " (event_id, pipeline, wave, action, actor, detail, issued_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            cmd.event_id,
            cmd.pipeline,
            cmd.wave,
            cmd.action,
            cmd.actor,
            detail,
            cmd.issued_at,
        )
