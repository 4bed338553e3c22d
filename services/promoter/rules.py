"""The promoter's rules as pure functions (no database, no Kafka, no clock: ``now`` is passed
in), the way ``status_tracker/decide.py`` holds the status-tracker's.

- Promotion states: ``PromotionState``, one type for the ``promotions`` table and the
  ``waveline.promotions`` events, and the groups the rules use (``TERMINAL``, ``IN_FLIGHT``,
  ``AT_GATE``).
- The gate of a wave: ``gate(facts, wave, now)`` -> ``GateVerdict`` (open, or what it waits
  for, why, and until when when known). Every gate is one case of that function, evaluated
  in ``GATE_ORDER``; the first closed one wins (``closed_gates`` lists them all).
- The next wave, supersession, and the rollback target.

The service around them (``waves.py``) reads facts through ``store.py``, asks these rules,
and writes what they decide through the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

# --- Promotion states -------------------------------------------------------------------

PromotionState = Literal[
    # promoter only (never on the topic): a promotion into the next wave created when the
    # source wave runs the set, waiting at the target wave's gate ...
    "waiting",
    # ... or stopped because the source wave is failing (back to waiting if it recovers).
    "blocked",
    # sent on its way (git command, or webhook delivery asked of the notifier)
    "requested",
    # commit strategy: on ``auto``
    "committed",
    # pull-request strategy: the pull request is open (opened or updated)
    "opened",
    # webhook strategy: the receiver answered 2xx
    "delivered",
    # final: the target wave runs the set / merged / reported succeeded
    "done",
    "failed",
    "cancelled",
    # final: a newer set took its place (at the gate, on the branch, or in the wave)
    "superseded",
]
PromotionKind = Literal["introduce", "promote", "rollback"]

STATES: tuple[PromotionState, ...] = get_args(PromotionState)
# Ended: nothing changes a promotion in one of these any more.
TERMINAL: frozenset[PromotionState] = frozenset({"done", "failed", "cancelled", "superseded"})
# Before its gate opened (promote only): no git command or webhook was sent yet.
AT_GATE: frozenset[PromotionState] = frozenset({"waiting", "blocked"})
# Sent and not ended: the target wave running the set makes it done.
IN_FLIGHT: frozenset[PromotionState] = frozenset({"requested", "committed", "opened", "delivered"})
# An approval may be recorded for a promotion in one of these.
APPROVABLE: frozenset[PromotionState] = AT_GATE


def is_terminal(state: str) -> bool:
    """Whether a promotion in ``state`` has ended (a report about it changes nothing)."""
    return state in TERMINAL


# --- Gate verdicts ------------------------------------------------------------------------

# What a closed gate waits for, machine-readable. The order of evaluation is GATE_ORDER.
GateKind = Literal["hold", "quarantine", "freeze", "verification", "quorum", "bake", "approval"]


@dataclass(frozen=True)
class GateVerdict:
    """Open (``waiting_for`` None), or closed: what it waits for (``waiting_for``), a
    human ``reason``, and ``until`` when the gate opens by itself at a known time (a bake
    ending, a freeze window closing); None when a person or an outside result opens it."""

    waiting_for: GateKind | None = None
    reason: str = "open"
    until: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.waiting_for is None

    def to_json(self) -> dict[str, Any]:
        """``{"open", "waiting_for", "reason", "until"}`` (ISO time or null)."""
        return {
            "open": self.is_open,
            "waiting_for": self.waiting_for,
            "reason": self.reason,
            "until": self.until.isoformat() if self.until else None,
        }


OPEN = GateVerdict()


def closed(kind: GateKind, reason: str, until: datetime | None = None) -> GateVerdict:
    return GateVerdict(waiting_for=kind, reason=reason, until=until)
