"""Why a GitHub delivery changes nothing: pure rules, no I/O (docs/security.md, A delivery
that changes nothing says why).

A delivery Waveline does not act on is answered with what was ignored and why, instead of a
bare 2xx a new user cannot tell from success. Dropped (nothing published): an event kind or
pull-request action ingest does not read, a repository no ``repos:`` entry is known by on
the forge, a check context the repository does not require, and a check on a commit already
judged (green, red, or replaced by a replay). Published all the same, with a note: a check
on a commit not (yet) known on ``auto`` — the status-tracker may not have recorded the
commit yet (it stores the check and judges the commit when it does), and the notifier's
auto-merge reads checks on promotion pull requests' heads, which are not on ``auto``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from waveline.shared.config import WavelineConfig

Reason = Literal[
    "event_not_read",
    "action_not_read",
    "unknown_repository",
    "context_not_required",
    "commit_already_judged",
    "sha_not_on_auto",
]
REASONS: tuple[Reason, ...] = get_args(Reason)
# Only these are worth a row in ``ignored_deliveries``: the others are routine (GitHub sends
# every event kind and action a webhook subscribes to) and would bury them.
RECORDED: frozenset[Reason] = frozenset(
    {"unknown_repository", "context_not_required", "commit_already_judged", "sha_not_on_auto"}
)
# The events whose checks and pull requests ingest reads.
READ_EVENTS = ("status", "check_run", "check_suite", "pull_request")
# Commit states (``auto_commits.state``) for which a check can still decide something;
# ``pull_request``: the head of a promotion pull request (the notifier's auto-merge).
UNDECIDED = frozenset({"pending", "pull_request"})
# Names and contexts come from the sender: cut to this in answers, logs and rows.
MAX_TEXT = 200


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, with no control character (it goes into logs)."""
    text = "".join(c if c.isprintable() else "?" for c in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Ignored:
    """One delivery's reason to change nothing (or, ``published``, perhaps nothing)."""

    reason: Reason
    detail: str
    # What makes two deliveries the same cause (logged once).
    cause: tuple[str, ...]
    repo: str | None = None  # the config key; None when the repository is not known
    forge_name: str | None = None  # the repository as the forge names it
    context: str | None = None
    sha: str | None = None
    fix: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    published: bool = False

    @property
    def recorded(self) -> bool:
        return self.reason in RECORDED

    def answer(self) -> dict[str, Any]:
        """The JSON answer's fields (the caller adds ``event_id`` for a published one)."""
        doc: dict[str, Any] = {
            "ignored": not self.published,
            "reason": self.reason,
            "detail": self.detail,
        }
        for key in ("repo", "forge_name", "context", "sha", "fix"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = value
        return {**doc, **self.extra}


def configured_repositories(config: WavelineConfig) -> list[dict[str, str]]:
    """Each ``repos:`` entry and the name a forge's deliveries must carry to match it."""
    return [
        {
            "repo": key,
            "forge_name": repo.full_name(),
            "from": "forge_name" if repo.forge_name else "url",
        }
        for key, repo in sorted(config.repos.items())
    ]


def unknown_repository(config: WavelineConfig, forge_name: str, event: str) -> Ignored:
    named = clip(forge_name)
    known = configured_repositories(config)
    listed = ", ".join(f"{r['forge_name']} ({r['repo']})" for r in known) or "none"
    return Ignored(
        "unknown_repository",
        f"{event} about repository {named}, which is not the forge name of any configured"
        f" repository; configured: {listed}",
        ("unknown_repository", named.lower()),
        forge_name=named,
        fix=f"if {named} is one of the configured repositories, set its forge_name:"
        f" {named} in the config file (the name is otherwise derived from the url's last"
        " two path segments, which for a mirror or a host with a path prefix is not the"
        " forge's owner/name)",
        extra={"configured_repositories": known},
    )


def unread_event(config: WavelineConfig, event: str, forge_name: str | None) -> Ignored:
    """An event kind ingest does not read. A ``ping`` (sent when a webhook is created)
    about a repository Waveline does not know says so at once."""
    if event == "ping" and forge_name and config.repo_by_full_name(forge_name) is None:
        return unknown_repository(config, forge_name, event)
    repo = config.repo_by_full_name(forge_name) if forge_name else None
    what = "the webhook reaches Waveline" if event == "ping" else "this event is not read"
    return Ignored(
        "event_not_read",
        f"{clip(event)}: {what}; Waveline reads {', '.join(READ_EVENTS)}",
        ("event_not_read", clip(event, 64)),
        repo=repo,
        forge_name=clip(forge_name) if forge_name else None,
    )


def unread_action(repo: str, action: str | None) -> Ignored:
    return Ignored(
        "action_not_read",
        f"pull_request action {clip(action or '(none)', 64)!r} changes nothing Waveline follows",
        ("action_not_read", clip(action or "", 64)),
        repo=repo,
    )


def context_fate(config: WavelineConfig, repo: str, context: str) -> Ignored | None:
    """None when ``repo`` requires ``context``; otherwise why the check is dropped: it can
    make no commit green or red (the status-tracker judges required checks only)."""
    required = config.repos[repo].required_check_names()
    if context in required:
        return None
    listed = ", ".join(required) or "none (its commits are fast-forwarded as soon as made)"
    return Ignored(
        "context_not_required",
        f"check {clip(context)!r} is not a required check of repository {repo}; required: {listed}",
        ("context_not_required", repo, clip(context)),
        repo=repo,
        context=clip(context),
        fix=f"if this check should gate {repo}, add it to repos.{repo}.required_checks",
        extra={"required_checks": list(required)},
    )


def commit_fate(repo: str, sha: str, context: str, state: str | None) -> Ignored | None:
    """None when a check on ``sha`` may still decide something (a commit pending on auto,
    or a promotion pull request's head); otherwise why not. ``state`` is the commit's
    ``auto_commits`` state, ``pull_request``, or None when the commit is not known."""
    if state in UNDECIDED:
        return None
    short = clip(sha, 64)
    if state is None:
        return Ignored(
            "sha_not_on_auto",
            f"commit {short} is not (yet) known on auto of repository {repo}: the check is"
            " published all the same, and counts if Waveline's commit is recorded"
            " after it; a check on any other commit changes nothing",
            ("sha_not_on_auto", repo),
            repo=repo,
            context=clip(context),
            sha=short,
            published=True,
        )
    return Ignored(
        "commit_already_judged",
        f"commit {short} of repository {repo} was already judged ({state}); a check on it"
        " changes nothing",
        ("commit_already_judged", repo),
        repo=repo,
        context=clip(context),
        sha=short,
        extra={"commit_state": state},
    )


class CauseLog:
    """Which causes were logged already, so a flood of deliveries with one cause logs one
    line. Bounded: the oldest causes are forgotten first (and logged again if they recur)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self._limit = limit

    def first(self, cause: Hashable) -> bool:
        """True the first time ``cause`` is seen (since it was forgotten)."""
        if cause in self._seen:
            self._seen.move_to_end(cause)
            return False
        self._seen[cause] = None
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return True
