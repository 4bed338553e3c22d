"""What an approve, hold or release is about, looked up when ingest accepts it
(docs/security.md, Deploy reports, checks, approvals).

An approval names the image set waiting at the wave's gate now; the promoter approves that
set only, so a replayed or late approval can never approve a set that arrived since. A hold
names the set waiting when it was made (if any); a release names the hold it ends (and the
set that hold kept), so a replayed release cannot end a later hold.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from waveline.services.ingest.deliveries import db_call
from waveline.services.ingest.responses import ApiError


@dataclass(frozen=True)
class GateSubject:
    app_sha: str | None = None
    hold_id: uuid.UUID | None = None


async def waiting_set(pool: asyncpg.Pool, pipeline: str, wave: str) -> str | None:
    """The image set waiting at ``wave``'s gate (a newer one supersedes an older one): a
    promotion into it, or an introduction into the first wave a freeze holds."""
    found: str | None = await db_call(
        pool.fetchval(
            "SELECT app_sha FROM promotions WHERE pipeline = $1 AND wave = $2"
            " AND kind IN ('promote', 'introduce') AND status = 'waiting'"
            " ORDER BY created_at DESC LIMIT 1",
            pipeline,
            wave,
        )
    )
    return found


async def gate_subject(pool: asyncpg.Pool, pipeline: str, wave: str, action: str) -> GateSubject:
    """The set (and hold) ``action`` on ``wave`` is about; 409 when there is none to
    approve or release."""
    if action == "approve":
        app_sha = await waiting_set(pool, pipeline, wave)
        if app_sha is None:
            raise ApiError(
                409, "nothing_waiting", f"no image set waits at the gate of wave {wave!r}"
            )
        return GateSubject(app_sha=app_sha)
    if action == "hold":
        return GateSubject(app_sha=await waiting_set(pool, pipeline, wave))
    if action == "release":
        gate = await db_call(
            pool.fetchrow(
                "SELECT hold_id, held_app_sha FROM wave_gates"
                " WHERE pipeline = $1 AND wave = $2 AND held",
                pipeline,
                wave,
            )
        )
        if gate is None or gate["hold_id"] is None:
            raise ApiError(409, "not_held", f"wave {wave!r} is not held")
        return GateSubject(app_sha=gate["held_app_sha"], hold_id=gate["hold_id"])
    return GateSubject()
