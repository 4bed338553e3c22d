"""Pure decisions of the reconciler (docs/reconcile.md): what is due for a poll, when it is
polled again, how much of the forge's budget a call may take, and which of what a poll
learned to publish.

Kept free of I/O, like the status-tracker's ``decide.py``: the service around it only reads
rows, calls the forge and the deployer, and publishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from waveline.services.status_tracker.decide import trusted_reporter
from waveline.shared.config import RequiredCheck
from waveline.shared.forge.github_checks import SECONDARY_LIMIT_WAIT_S, CommitCheck, RateLimit

# -- backoff per item -------------------------------------------------------------------------


@dataclass(frozen=True)
class PollState:
    """What is remembered of one polled item (a commit, a target): how many polls found
    nothing new in a row, and when it may be polled next (monotonic seconds)."""

    attempts: int = 0
    next_at: float = 0.0


def next_delay(attempts: int, first_s: float, cap_s: float) -> float:
    """How long after a poll the item is polled again: ``first_s`` after the first,
    doubling with each poll that followed, at most ``cap_s``."""
    return min(cap_s, first_s * 2.0 ** min(attempts, 32))


def after_poll(state: PollState | None, now: float, first_s: float, cap_s: float) -> PollState:
    """The item's state once polled at ``now``."""
    attempts = 0 if state is None else state.attempts
    return PollState(attempts + 1, now + next_delay(attempts, first_s, cap_s))


def due(state: PollState | None, now: float) -> bool:
    """Whether an item old enough to poll may be polled at ``now``."""
    return state is None or now >= state.next_at


# -- the forge's budget -----------------------------------------------------------------------


def budget_wait(rate: RateLimit, share: float, now: float) -> float:
    """Seconds to wait before the next call that costs budget, given what the last answer
    said of it (``now`` and ``rate.reset_at`` in Unix time).

    Polling may spend ``share`` of the budget: it keeps ``(1 - share) * limit`` calls for
    the other users of the credentials (counting what they spent too, as ``remaining``
    does). While more is left, no wait; once it is spent, wait for the reset. A header
    missing: no wait (the next answer will tell)."""
    if rate.retry_after_s is not None:
        return rate.retry_after_s
    if rate.limit is None or rate.remaining is None or rate.reset_at is None:
        return 0.0
    spendable = rate.remaining - (1.0 - share) * rate.limit
    return 0.0 if spendable >= 1 else max(0.0, rate.reset_at - now)


def refusal_wait(wait_s: float | None, rate: RateLimit, share: float, now: float) -> float:
    """How long to pause all calls after a rate-limit refusal (403/429): what GitHub asked
    (``Retry-After``, or the reset), else the budget's pace, at least a minute when it said
    nothing at all (GitHub's advice for secondary limits)."""
    if wait_s is not None:
        return wait_s
    return max(budget_wait(rate, share, now), SECONDARY_LIMIT_WAIT_S)


# -- checks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingCommit:
    """A commit of ``auto`` the status-tracker has not judged, ``age_s`` after it was
    recorded."""

    repo: str
    sha: str
    age_s: float


def commits_due(
    pending: Iterable[PendingCommit],
    polls: Mapping[tuple[str, str], PollState],
    now: float,
    after_s: float,
) -> list[PendingCommit]:
    """The pending commits to poll now: waited ``after_s`` for a verdict, and their own
    backoff has run out. Oldest first, so a budget running short serves them in order."""
    ready = [c for c in pending if c.age_s >= after_s and due(polls.get((c.repo, c.sha)), now)]
    return sorted(ready, key=lambda c: -c.age_s)


def verdicts(
    required: Sequence[RequiredCheck], checks: Iterable[CommitCheck]
) -> dict[str, CommitCheck]:
    """What to report for each required context: among ``checks`` (newest first), the
    newest from a reporter the required check trusts (``trusted_reporter``, the
    status-tracker's rule). Pending ones are left out: they decide nothing, and a poll that
    read one just before the webhook of its result arrived must not overwrite it."""
    names = {c.name for c in required}
    found: dict[str, CommitCheck] = {}
    for check in checks:
        if check.context not in names or check.context in found:
            continue
        if trusted_reporter(required, check.context, check.app, check.user):
            found[check.context] = check
    return {ctx: check for ctx, check in found.items() if check.state != "pending"}


def learned(found: Mapping[str, CommitCheck], known: Mapping[str, str]) -> list[CommitCheck]:
    """The verdicts the status-tracker does not hold yet (``known``: its state per context
    for the commit): what only polling brought. Sorted by context for a stable order."""
    return [found[ctx] for ctx in sorted(found) if known.get(ctx) != found[ctx].state]


def needs_suites(required: Sequence[RequiredCheck]) -> bool:
    """Whether a required check is a whole check suite (``check_suite:<app>``)."""
    return any(c.name.startswith("check_suite:") for c in required)


# -- deploys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetView:
    """A target's last counted report: the set its wave holds at the reported revision
    (None: a revision whose holdings are unknown), sync and health."""

    target: str
    app_sha: str | None
    sync: str
    health: str


def waiting_targets(
    targets: Sequence[str],
    expected_app: str | None,
    running_app: str | None,
    *,
    tip_age_s: float,
    after_s: float,
    reports: Mapping[str, TargetView],
) -> list[str]:
    """The targets of one wave to read from the deployer.

    ``expected_app`` is the set the wave holds at watched's tip (the commit Argo CD syncs
    to), ``tip_age_s`` how long ago Waveline saw watched move there, ``running_app`` the set
    the status-tracker last said the wave runs (None: not running). Nothing is waited for
    when the wave holds nothing there or already runs what it holds; otherwise, once the
    tip is ``after_s`` old, every target that has not reported that set Synced and Healthy.
    """
    if expected_app is None or running_app == expected_app or tip_age_s < after_s:
        return []
    return [
        t
        for t in targets
        if (r := reports.get(t)) is None
        or not (r.app_sha == expected_app and r.sync == "Synced" and r.health == "Healthy")
    ]
