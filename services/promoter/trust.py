"""Pure rules: which wave statuses and operator commands the promoter may apply
(docs/security.md, Deploy reports, checks, approvals).

A wave status about an earlier position on the watched branch than one already applied is
an old status replayed or redelivered: it neither supersedes nor blocks anything. An
approval counts for the image set it names only. A hold older than the gate's last change,
or a release of any hold but the one in force, changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from waveline.services.promoter.rules import APPROVABLE


def stale_status(position: int | None, applied: int | None) -> bool:
    """Whether a wave status at ``position`` comes after one at ``applied`` was applied.
    A status without a position (from before positions) is stale once a positioned one
    was applied: it cannot be ordered against it."""
    if applied is None:
        return False
    return position is None or position < applied


def approval_refusal(app_sha: str, status: str | None, approved: bool) -> str | None:
    """Why an approval of ``app_sha``, whose promotion into the wave is in ``status``
    (None: there is none) and already ``approved`` or not, is refused; None when it is
    recorded (again: a redelivery or replay of an approval that counted changes nothing)."""
    if approved or status in APPROVABLE:
        return None
    if status is None:
        return f"no promotion of {app_sha[:12]} waits at this gate"
    return f"the promotion of {app_sha[:12]} is {status}: a newer set needs its own approval"


@dataclass(frozen=True)
class Gate:
    held: bool
    hold_id: UUID | None
    changed_at: datetime | None


def hold_refusal(gate: Gate | None, event_id: UUID, issued_at: datetime) -> str | None:
    """Why a hold (``event_id`` issued at ``issued_at``) does not apply; None when it does
    (its own redelivery applies again, unchanged)."""
    if gate is None or gate.changed_at is None or gate.hold_id == event_id:
        return None
    if issued_at <= gate.changed_at:
        return "issued before the gate's last change (a replayed hold)"
    return None


def release_refusal(gate: Gate | None, hold_id: UUID | None, issued_at: datetime) -> str | None:
    """Why a release naming hold ``hold_id`` does not apply; None when it ends the hold in
    force, or is the release that ended the last one (its redelivery)."""
    if gate is not None and not gate.held and gate.changed_at == issued_at:
        return None
    if gate is None or not gate.held:
        return "the gate is not held"
    if hold_id is None or gate.hold_id != hold_id:
        return "it names another hold than the one in force (a replayed release)"
    return None
