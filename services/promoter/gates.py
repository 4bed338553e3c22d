"""The promoter's side of approve, hold and release, and of stale wave statuses: rows in,
rules from ``trust.py``, rows out (docs/security.md, Deploy reports, checks, approvals).

A refused command raises ``CommandRefused``: it is dead-lettered with the reason (and not
recorded as an operator action)."""

from __future__ import annotations

import logging

import asyncpg

from waveline.services.promoter.trust import (
    Gate,
    approval_refusal,
    hold_refusal,
    release_refusal,
    stale_status,
)
from waveline.shared.errors import PreconditionFailed
from waveline.shared.models.operator import OperatorCommand
from waveline.shared.models.waves import WaveStatus

logger = logging.getLogger(__name__)


class CommandRefused(PreconditionFailed):
    """An approval, hold or release that may not apply (a replayed or late one). Permanent:
    dead-lettered with the reason."""

    code = "operator_command_refused"


async def stale(pool: asyncpg.Pool, status: WaveStatus) -> bool:
    """True (and logged) when ``status`` is about an earlier watched position than one
    applied for its wave; otherwise its position is recorded and False returned."""
    applied = await pool.fetchval(
        "SELECT cfg_position FROM wave_positions WHERE pipeline = $1 AND wave = $2",
        status.pipeline,
        status.wave,
    )
    if stale_status(status.cfg_position, applied):
        logger.warning(
            "pipeline %s wave %s: %s status at watched position %s ignored: %s was applied",
            status.pipeline,
            status.wave,
            status.state,
            status.cfg_position,
            applied,
        )
        return True
    if status.cfg_position is not None:
        await pool.execute(
            "INSERT INTO wave_positions (pipeline, wave, cfg_position) VALUES ($1, $2, $3)"
            " ON CONFLICT (pipeline, wave) DO UPDATE"
            " SET cfg_position = greatest(wave_positions.cfg_position, EXCLUDED.cfg_position)",
            status.pipeline,
            status.wave,
            status.cfg_position,
        )
    return False


async def approve(pool: asyncpg.Pool, cmd: OperatorCommand) -> None:
    """Record the approval of the set ``cmd`` names, only while its promotion into the wave
    waits (or is blocked); ``CommandRefused`` otherwise."""
    assert cmd.app_sha is not None  # the model refuses an approval without one
    async with pool.acquire() as conn, conn.transaction():
        # One forward promotion per (pipeline, wave, set): the unique index promotions_once.
        row = await conn.fetchrow(
            "SELECT p.promotion_id, p.status, a.promotion_id IS NOT NULL AS approved"
            " FROM promotions p LEFT JOIN approvals a USING (promotion_id)"
            " WHERE p.pipeline = $1 AND p.wave = $2 AND p.app_sha = $3 AND p.kind = 'promote'"
            " FOR UPDATE OF p",
            cmd.pipeline,
            cmd.wave,
            cmd.app_sha,
        )
        refusal = approval_refusal(
            cmd.app_sha, row["status"] if row else None, bool(row and row["approved"])
        )
        if refusal is not None:
            raise CommandRefused(f"approval of {cmd.pipeline}/{cmd.wave} refused: {refusal}")
        assert row is not None
        await conn.execute(
            "INSERT INTO approvals (promotion_id, actor) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            row["promotion_id"],
            cmd.actor,
        )


async def hold_or_release(pool: asyncpg.Pool, cmd: OperatorCommand) -> None:
    """Apply a hold or a release to the wave's gate unless a rule refuses it
    (``CommandRefused``)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT held, hold_id, changed_at FROM wave_gates"
            " WHERE pipeline = $1 AND wave = $2 FOR UPDATE",
            cmd.pipeline,
            cmd.wave,
        )
        gate = Gate(row["held"], row["hold_id"], row["changed_at"]) if row else None
        if cmd.action == "hold":
            refusal = hold_refusal(gate, cmd.event_id, cmd.issued_at)
        else:
            refusal = release_refusal(gate, cmd.hold_id, cmd.issued_at)
        if refusal is not None:
            raise CommandRefused(f"{cmd.action} of {cmd.pipeline}/{cmd.wave} refused: {refusal}")
        holding = cmd.action == "hold"
        await conn.execute(
            "INSERT INTO wave_gates (pipeline, wave, held, hold_id, held_app_sha, changed_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline, wave) DO UPDATE"
            " SET held = EXCLUDED.held, hold_id = EXCLUDED.hold_id,"
            " held_app_sha = EXCLUDED.held_app_sha,"
            " changed_at = greatest(wave_gates.changed_at, EXCLUDED.changed_at)",
            cmd.pipeline,
            cmd.wave,
            holding,
            cmd.event_id if holding else None,
            cmd.app_sha if holding else None,
            cmd.issued_at,
        )
