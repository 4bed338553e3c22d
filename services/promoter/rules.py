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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args
from uuid import UUID

from waveline.services.promoter.verify_rules import RunState
from waveline.services.promoter.verify_rules import verdict as verification_verdict
from waveline.shared.config import PipelineConfig, WaveConfig
from waveline.shared.freeze_config import FreezeWindows
from waveline.shared.verify_config import Verification

if TYPE_CHECKING:
    from waveline.services.promoter.freeze import BreakGlass, ManualFreeze

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


# --- The gate function --------------------------------------------------------------------


@dataclass(frozen=True)
class GateFacts:
    """What is known about one promotion of ``app_sha`` from ``from_wave`` waiting at the
    gate of the wave it goes to. ``since``: when ``from_wave`` began running the set (bake
    time counts from it). A gate added later brings its own fact here, defaulted so that
    it stays open when its caller knows nothing of it."""

    app_sha: str
    from_wave: str
    since: datetime
    approved: bool = False
    held: bool = False
    held_by: str | None = None
    # Freeze (freeze.py): the windows over the target wave, the manual freezes in force,
    # the break-glass records of this set into it, and when the promotion was created
    # (a break-glass made before it does not count).
    pipeline: str = ""
    freeze_windows: tuple[FreezeWindows, ...] = ()
    manual_freezes: tuple[ManualFreeze, ...] = ()
    break_glasses: tuple[BreakGlass, ...] = ()
    created_at: datetime | None = None
    # Verification (verify_rules.py): the source wave's verifications and this set's runs.
    verifications: tuple[Verification, ...] = ()
    verification_runs: Mapping[str, RunState] = field(default_factory=dict)
    # An introduction into the first wave (``from_wave`` empty, ``since`` its creation):
    # only a freeze stops one, and with the pipeline's ``freeze.introductions: allowed``
    # only a manual freeze of that very wave.
    introduction: bool = False
    introductions_allowed: bool = False
    # Rollback quarantine (shared/quarantine_store.py): why the set is quarantined in the
    # pipeline (None: it is not).
    quarantined: str | None = None


GateCheck = Callable[[GateFacts, WaveConfig, datetime], GateVerdict | None]


def hold_gate(facts: GateFacts, wave: WaveConfig, now: datetime) -> GateVerdict | None:
    """An operator's hold keeps the gate shut until released."""
    if not facts.held:
        return None
    who = f" by {facts.held_by}" if facts.held_by else ""
    return closed("hold", f"{wave.name} is held{who}")


def quarantine_gate(facts: GateFacts, wave: WaveConfig, now: datetime) -> GateVerdict | None:
    """A set rolled back out of a wave is never promoted again in its pipeline (nor
    introduced) until an operator lifts its quarantine."""
    if facts.quarantined is None:
        return None
    return closed(
        "quarantine",
        f"{facts.app_sha[:12]} is quarantined ({facts.quarantined}); lift it with"
        f" `waveline unquarantine {facts.pipeline or 'PIPELINE'} {facts.app_sha}`",
    )


def freeze_gate(facts: GateFacts, wave: WaveConfig, now: datetime) -> GateVerdict | None:
    """No promotion into a wave starts while a freeze window or a manual freeze covers
    it, unless a break-glass for this very promotion was recorded."""
    windows, manual = facts.freeze_windows, facts.manual_freezes
    if facts.introduction and facts.introductions_allowed:
        windows, manual = (), tuple(m for m in manual if m.scope == "wave")
    if not manual and not any(w.windows or w.ranges for w in windows):
        return None
    # Imported here: freeze.py builds on this module's verdict types.
    from waveline.services.promoter import freeze

    verdict = freeze.freeze_gate(windows, manual, now, pipeline=facts.pipeline, wave=wave.name)
    if verdict.is_open:
        return None
    glass = freeze.break_glass_for(
        facts.break_glasses,
        pipeline=facts.pipeline,
        wave=wave.name,
        app_sha=facts.app_sha,
        not_before=facts.created_at,
    )
    return verdict if glass is None else None


def verification_gate(facts: GateFacts, wave: WaveConfig, now: datetime) -> GateVerdict | None:
    """The source wave's verifications of the set must have passed (before its bake
    counts): closed while they run, and for good once one failed."""
    if not facts.verifications:
        return None
    state = verification_verdict(facts.verifications, facts.verification_runs)
    return None if state.passed else closed("verification", state.reason)


def bake_gate(facts: GateFacts, wave: WaveConfig, now: datetime) -> GateVerdict | None:
    """The set must have run in the source wave for the wave's bake time."""
    until = facts.since + wave.gate.bake
    if now >= until:
        return None
    shown = until.isoformat(timespec="seconds")
    return closed("bake", f"baking in {facts.from_wave} until {shown}", until)


def approval_gate(facts: GateFacts, wave: WaveConfig, now: datetime) -> GateVerdict | None:
    """A wave asking for approval waits for one naming this set."""
    if not wave.gate.approval or facts.approved:
        return None
    return closed("approval", f"awaiting approval of {facts.app_sha[:12]} into {wave.name}")


# The order gates are evaluated in; the first closed one is the verdict. An operator's hold
# first (it stops everything), then a freeze (nothing starts in it, whatever else holds),
# then what the source wave's run of the set must show (verification, then bake time), and
# last what a person opens (approval): the reason shown is the one that must clear first.
# A quarantined set comes right after a hold: no other gate opening may let it through.
# Quorum is no case here: the status-tracker says a wave runs a set once its quorum does.
GATE_ORDER: tuple[GateCheck, ...] = (
    hold_gate,
    quarantine_gate,
    freeze_gate,
    verification_gate,
    bake_gate,
    approval_gate,
)


# The first wave has no gate but a quarantine and a freeze: an introduction is not held,
# baked or approved.
INTRODUCTION_ORDER: tuple[GateCheck, ...] = (quarantine_gate, freeze_gate)


def _order(facts: GateFacts) -> tuple[GateCheck, ...]:
    return INTRODUCTION_ORDER if facts.introduction else GATE_ORDER


def closed_gates(facts: GateFacts, wave: WaveConfig, now: datetime) -> list[GateVerdict]:
    """Every closed gate of ``wave`` for the promotion ``facts`` describes, in
    ``GATE_ORDER`` (``INTRODUCTION_ORDER`` for an introduction; empty: open)."""
    found = (check(facts, wave, now) for check in _order(facts))
    return [v for v in found if v is not None]


def gate(facts: GateFacts, wave: WaveConfig, now: datetime) -> GateVerdict:
    """Whether the promotion ``facts`` describes may go into ``wave`` at ``now``: ``OPEN``,
    or the first closed gate in ``GATE_ORDER`` (``INTRODUCTION_ORDER``)."""
    for check in _order(facts):
        verdict = check(facts, wave, now)
        if verdict is not None:
            return verdict
    return OPEN


# --- Waves, supersession, rollback -------------------------------------------------------


def next_wave(pipeline: PipelineConfig, wave: str) -> str | None:
    """The wave after ``wave`` (None after the last; ``ValueError`` for an unknown one)."""
    names = [w.name for w in pipeline.waves]
    index = names.index(wave)
    return names[index + 1] if index + 1 < len(names) else None


@dataclass(frozen=True)
class PromotionFacts:
    """One promotion into a wave, as the rules need it."""

    promotion_id: UUID
    app_sha: str
    kind: PromotionKind
    state: PromotionState
    created_at: datetime


def superseded_at_gate(into_wave: Iterable[PromotionFacts], app_sha: str) -> list[UUID]:
    """The promotions a newer set ``app_sha`` supersedes when it reaches the wave's gate:
    every other set's promotion still waiting there. A blocked one (its source wave
    failing) is left: it is not at the gate until the source recovers."""
    return [
        p.promotion_id
        for p in into_wave
        if p.kind == "promote" and p.state == "waiting" and p.app_sha != app_sha
    ]


# Sent into a wave, left behind when the wave runs a set sent after them. An open pull
# request is the notifier's to close or update (it supersedes its promotion itself).
OVERTAKEN: frozenset[PromotionState] = IN_FLIGHT - {"opened"}


@dataclass(frozen=True)
class Arrival:
    """What the wave running a set changes: ``done`` turn done now, ``announce`` have their
    done event sent (those of ``done`` and those done before: a redelivery must send what a
    failed publish did not), ``overtaken`` are superseded."""

    done: tuple[UUID, ...]
    announce: tuple[UUID, ...]
    overtaken: tuple[UUID, ...]


def arrival(into_wave: Sequence[PromotionFacts], app_sha: str) -> Arrival:
    """The wave runs ``app_sha``: every promotion in flight that brought it there is done;
    older sets sent into it that it never ran (a newer one landed on top before its targets
    reported) never will, and are superseded. Older: created before the first promotion of
    ``app_sha`` into the wave (none: nothing is overtaken)."""
    mine = [p for p in into_wave if p.app_sha == app_sha]
    done = tuple(p.promotion_id for p in mine if p.state in IN_FLIGHT)
    announce = done + tuple(p.promotion_id for p in mine if p.state == "done")
    first = min((p.created_at for p in mine), default=None)
    overtaken = tuple(
        p.promotion_id
        for p in into_wave
        if first is not None
        and p.app_sha != app_sha
        and p.state in OVERTAKEN
        and p.created_at < first
    )
    return Arrival(done, announce, overtaken)


@dataclass(frozen=True)
class WaveRun:
    """A set a wave ran, from ``since`` (its first run), at config commit ``cfg_sha``."""

    app_sha: str
    cfg_sha: str
    since: datetime


def rollback_target(runs: Iterable[WaveRun], to: str | None) -> WaveRun | None:
    """Where a rollback of a wave goes: the set ``to`` names, among those the wave ran; for
    ``to`` None or ``"previous"``, the second newest run by first run time. None: no such
    run (the wave never ran that set, or ran one set only)."""
    newest_first = sorted(runs, key=lambda r: r.since, reverse=True)
    if to in {None, "previous"}:
        return newest_first[1] if len(newest_first) > 1 else None
    return next((r for r in newest_first if r.app_sha == to), None)


# How long the status-tracker's word that a wave runs a set may stay ahead of the promoter's
# own record of that run (its wave status in flight between them) before a rollback from
# that set stops waiting for it.
RUN_RECORD_GRACE = timedelta(seconds=60)


def run_not_recorded_yet(
    runs: Iterable[WaveRun], running: tuple[str, datetime] | None, now: datetime
) -> bool:
    """Whether a rollback that found no target should wait rather than fail: the wave runs
    a set (``running``: the status-tracker's, with since when) that no recorded run names,
    for less than ``RUN_RECORD_GRACE``. An operator who saw it running may rightly ask for
    "previous" before the promoter has read the same wave status."""
    if running is None:
        return False
    app_sha, since = running
    return all(r.app_sha != app_sha for r in runs) and now - since < RUN_RECORD_GRACE


def verify_again(recorded_cfg_sha: str | None, cfg_sha: str) -> bool:
    """Whether a wave's verifications of a set start over: it runs a set it ran before
    (recorded at ``recorded_cfg_sha``) at another config commit, a rollback to it say. A
    redelivered status (the same commit) or a first run starts nothing over."""
    return recorded_cfg_sha is not None and recorded_cfg_sha != cfg_sha


# --- What reports do to a promotion ------------------------------------------------------

# Events the promoter mirrors into its table; requested and committed are its own or add
# nothing it needs.
MIRRORED: frozenset[PromotionState] = frozenset(STATES) - {"requested", "committed"}


def result_state(result: Literal["succeeded", "failed"]) -> Literal["done", "failed"]:
    """The end of a webhook promotion its receiver reported."""
    return "done" if result == "succeeded" else "failed"


def pull_request_end(merged: bool) -> Literal["done", "cancelled"]:
    """The end of a pull-request promotion whose pull request closed: merged or not."""
    return "done" if merged else "cancelled"
