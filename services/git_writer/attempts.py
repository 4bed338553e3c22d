"""Retry after eviction: whether announcing an image set again makes a new attempt (pure).

An image set's introduction into its pipeline's first wave is attempt 1: the promoter's
command, whose id is the promotion's and whose commit carries no attempt trailer. When that
commit is evicted from ``auto`` (a required check failed), announcing the set again (or
``waveline retry``) asks for attempt 2: a new command with its own id, so its own Event-Id,
and a ``Waveline-Attempt: 2`` trailer; and so on. While the newest attempt's commit is on
``auto`` or ``watched`` (or not made yet), announcing again changes nothing.

Ingest decides from what the git-writer recorded in PostgreSQL (its results and its
eviction records, with the status-tracker's verdicts), to answer the caller; the git-writer
decides again from its Event-Id index when the command arrives, so a command that lost a race
with a still-live commit of the set is a no-op. Both call ``decide``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from waveline.services.promoter.ids import promotion_id

# Where the newest attempt of a set is:
# - requested: asked for, no commit recorded yet (in Kafka, or the writer behind);
# - auto: its commit is on auto, its required checks not all green;
# - evicting: a required check is red, the eviction not done yet;
# - watched: its commit is on watched (or was fast-forwarded there);
# - evicted: the git-writer removed its commit from auto;
# - refused: the git-writer refused the command (an admission rule): retrying changes nothing.
Place = Literal["requested", "auto", "evicting", "watched", "evicted", "refused"]
Outcome = Literal["unknown", "new_attempt", "pending", "on_watched", "not_retriable"]

_NS = uuid.UUID("9d7f3a52-6c1e-4f0b-8a4d-2e5b7c9d1f03")


@dataclass(frozen=True)
class SetFacts:
    """What is known of one image set of a pipeline."""

    announced: bool  # the promoter recorded the set (image_sets)
    attempt: int = 1  # the newest attempt asked for
    place: Place = "requested"  # where that attempt is
    strategy: str = "commit"  # the first wave's strategy (only "commit" evicts)


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    attempt: int  # the new attempt's number, else the newest attempt's
    why: str

    @property
    def retries(self) -> bool:
        return self.outcome == "new_attempt"


def decide(facts: SetFacts) -> Decision:
    """A new attempt exactly when the newest attempt's commit was evicted."""
    n = facts.attempt
    if not facts.announced:
        return Decision("unknown", 0, "this image set was never announced")
    if facts.strategy != "commit":
        return Decision(
            "not_retriable",
            n,
            f"the first wave uses the {facts.strategy} strategy: nothing is evicted from auto",
        )
    if facts.place == "evicted":
        return Decision("new_attempt", n + 1, f"attempt {n} was evicted from auto")
    if facts.place == "watched":
        return Decision("on_watched", n, f"attempt {n} is already on watched")
    if facts.place == "auto":
        return Decision("pending", n, f"attempt {n} is on auto, waiting for its required checks")
    if facts.place == "evicting":
        return Decision(
            "pending", n, f"attempt {n} failed a required check and is being evicted; try again"
        )
    if facts.place == "refused":
        return Decision("not_retriable", n, f"attempt {n} was refused by the git-writer")
    return Decision("pending", n, f"attempt {n} was requested and is not committed yet")


def command_id(pipeline: str, wave: str, app_sha: str, attempt: int) -> uuid.UUID:
    """The git command (and Event-Id) of an attempt: attempt 1 is the promoter's
    introduction; later ones derive from it, so a repeated request is the same command."""
    first = promotion_id(pipeline, wave, app_sha, "introduce")
    return first if attempt <= 1 else uuid.uuid5(_NS, f"{first}/attempt/{attempt}")
