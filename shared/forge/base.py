"""The forge interface: pull requests (merge requests on GitLab), as the promoter needs them.

Promotion by pull request (README.md) needs four things from a forge: open a pull request for a
branch, or refresh the one already open for it; read one back; merge it only if its head is
still the commit that was vetted; and release the connection. Results are plain dataclasses so
callers never see a forge's wire format. ``repo_full_name`` is the repository's path on the
forge: ``owner/name`` on GitHub, ``group/sub/name`` on GitLab (``RepoConfig.full_name``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from waveline.shared.errors import WavelineError

MERGE_METHODS: tuple[str, ...] = ("merge", "squash", "rebase")

# Statuses worth retrying: the forge was down or slow (5xx, 408) or asked us to back off (429).
RETRIABLE_STATUSES = frozenset({408, 429})


def is_retriable_status(status: int | None) -> bool:
    """True for no answer at all (connection error, timeout), 5xx, 408 and 429."""
    return status is None or status >= 500 or status in RETRIABLE_STATUSES


class ForgeError(WavelineError):
    """A forge call failed. ``status`` is the HTTP status, or None when no answer came.

    ``retriable`` defaults from ``status`` (see ``is_retriable_status``): no answer, 5xx, 408
    and 429 are worth retrying, other 4xx answers are permanent. Errors found before any
    request (a bad argument, an unreadable answer) pass ``retriable=False``. Messages never
    contain the credential.
    """

    code = "forge_error"

    def __init__(
        self, message: str, *, status: int | None = None, retriable: bool | None = None
    ) -> None:
        super().__init__(
            message, retriable=is_retriable_status(status) if retriable is None else retriable
        )
        self.status = status


class PullRequestNotMergeable(ForgeError):
    """The forge refused the merge (GitHub 405): conflicts, not open, or a branch rule."""

    code = "pull_request_not_mergeable"


class HeadChanged(ForgeError):
    """The pull request's head is no longer the commit the caller vetted (GitHub 409)."""

    code = "pull_request_head_changed"


@dataclass(frozen=True, slots=True)
class PullRequest:
    """A pull request as the forge last reported it.

    ``url`` is the page a human opens; ``merge_commit_sha`` is the commit the merge put on
    the base branch, None until merged; ``created`` is True only when this call opened it
    (False when an open one was found and updated).
    """

    number: int
    url: str
    state: Literal["open", "closed"]
    merged: bool
    head_ref: str
    head_sha: str
    base_ref: str
    merge_commit_sha: str | None = None
    created: bool = False


class Forge(Protocol):
    """What Waveline needs from a code forge. Every method raises ``ForgeError`` on failure."""

    async def open_or_update_pull_request(
        self, repo_full_name: str, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        """Open a pull request from ``head`` into ``base``; if one is already open for that
        pair, update its title and body instead. Idempotent: at most one open pull request."""
        ...

    async def get_pull_request(self, repo_full_name: str, number: int) -> PullRequest:
        """Read pull request ``number``."""
        ...

    async def merge_pull_request(
        self,
        repo_full_name: str,
        number: int,
        *,
        sha: str,
        method: str = "merge",
        commit_title: str | None = None,
        commit_message: str | None = None,
        when_checks_pass: bool = False,
    ) -> str | None:
        """Merge only if the head is still ``sha``; return the commit now on the base branch.

        ``method`` is one of ``MERGE_METHODS``; anything else (or one the forge cannot do
        per merge) raises a permanent ForgeError. ``when_checks_pass`` asks the forge to
        merge by itself once the head's pipeline succeeds (GitLab's auto-merge): None is
        returned when the merge was scheduled rather than done; a forge without it raises a
        permanent ForgeError.

        Raises ``HeadChanged`` when the head moved and ``PullRequestNotMergeable`` when the
        forge refuses (conflicts, closed, protected)."""
        ...

    async def close(self) -> None:
        """Release connections. Safe to call more than once."""
        ...
