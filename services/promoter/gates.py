"""The promoter's side of approve, hold and release, and of stale wave statuses: rows in
(``store_gates.py``), rules from ``trust.py``, rows out (docs/security.md, Deploy reports,
checks, approvals).

A refused command raises ``CommandRefused``: it is dead-lettered with the reason (and not
recorded as an operator action)."""

from __future__ import annotations

import logging

from waveline.services.promoter.store_gates import GateStore
from waveline.services.promoter.trust import (
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


async def stale(store: GateStore, status: WaveStatus) -> bool:
    """True (and logged) when ``status`` is about an earlier watched position than one
    applied for its wave; otherwise its position is recorded and False returned."""
    applied = await store.applied_position(status.pipeline, status.wave)
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
        await store.record_position(status.pipeline, status.wave, status.cfg_position)
    return False


async def approve(store: GateStore, cmd: OperatorCommand) -> None:
    """Record the approval of the set ``cmd`` names, only while its promotion into the wave
    waits (or is blocked); ``CommandRefused`` otherwise."""
    assert cmd.app_sha is not None  # the model refuses an approval without one
    async with store.transaction() as tx:
        # One forward promotion per (pipeline, wave, set): the unique index promotions_once.
        row = await tx.approval_subject(cmd.pipeline, cmd.wave, cmd.app_sha)
        refusal = approval_refusal(
            cmd.app_sha, row["status"] if row else None, bool(row and row["approved"])
        )
        if refusal is not None:
            raise CommandRefused(f"approval of {cmd.pipeline}/{cmd.wave} refused: {refusal}")
        assert row is not None
        await tx.approve(row["promotion_id"], cmd.actor)


async def hold_or_release(store: GateStore, cmd: OperatorCommand) -> None:
    """Apply a hold or a release to the wave's gate unless a rule refuses it
    (``CommandRefused``)."""
    async with store.transaction() as tx:
        gate = await tx.wave_gate(cmd.pipeline, cmd.wave)
        if cmd.action == "hold":
            refusal = hold_refusal(gate, cmd.event_id, cmd.issued_at)
        else:
            refusal = release_refusal(gate, cmd.hold_id, cmd.issued_at)
        if refusal is not None:
            raise CommandRefused(f"{cmd.action} of {cmd.pipeline}/{cmd.wave} refused: {refusal}")
        holding = cmd.action == "hold"
        await tx.set_hold(
            cmd.pipeline,
            cmd.wave,
            held=holding,
            hold_id=cmd.event_id if holding else None,
            app_sha=cmd.app_sha if holding else None,
            changed_at=cmd.issued_at,
        )
