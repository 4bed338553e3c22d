"""GitHub's view of a commit's checks, read over the REST API (version 2022-11-28): its commit
statuses, check runs and check suites, as the reconciler polls them when a webhook was lost.

Every read is conditional: the ETag of the last answer goes in ``If-None-Match``, and a 304
(which GitHub does not charge to the rate limit) comes back as "unchanged". Every answer's
rate-limit headers come back parsed (``RateLimit``); a 403 or 429 that is a rate limit
raises ``RateLimited`` with how long GitHub asks to wait. Results are plain dataclasses in
the terms a webhook delivery uses (context, state, reporting App or user), so the caller
never sees GitHub's wire format. The token travels only in the ``Authorization`` header;
it is a fixed ``SecretStr`` or a ``TokenSource`` (an App's installation tokens, renewed
before they expire and after a 401, shared/forge/github_app.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from pydantic import SecretStr

from waveline.shared.forge.base import ForgeError
from waveline.shared.forge.github import API_VERSION, _repo_path
from waveline.shared.forge.github_app import StaticToken, TokenSource
from waveline.shared.models.checks import CheckState

logger = logging.getLogger(__name__)

CheckKind = Literal["status", "check_run", "check_suite"]
# What a check run or suite concluded that counts as passing (as ingest reads webhooks).
_PASSING = {"success", "neutral", "skipped"}
_STATES = {"pending", "success", "failure", "error"}
# GitHub asks for at least a minute's pause after a secondary rate limit without headers.
SECONDARY_LIMIT_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class CommitCheck:
    """One check on a commit, as a webhook would have reported it: ``context`` is the status
    context, the check run's name or ``check_suite:<app>``; ``app`` is the reporting App's
    slug, ``user`` the login that created a status."""

    context: str
    state: CheckState
    kind: CheckKind
    app: str | None = None
    user: str | None = None
    branch: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """What an answer's headers say of the budget: ``reset_at`` is a Unix time; a field
    GitHub did not send is None."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None
    retry_after_s: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit:
        def number(name: str) -> float | None:
            try:
                value = float(headers[name])
            except (KeyError, ValueError):
                return None
            return value if math.isfinite(value) and value >= 0 else None

        limit, remaining = number("X-RateLimit-Limit"), number("X-RateLimit-Remaining")
        return cls(
            limit=None if limit is None else int(limit),
            remaining=None if remaining is None else int(remaining),
            reset_at=number("X-RateLimit-Reset"),
            retry_after_s=number("Retry-After"),
        )


@dataclass(frozen=True, slots=True)
class Answer:
    """One conditional read: ``changed`` False for a 304 (``checks`` then empty: the caller
    keeps what the ETag stood for), ``etag`` to send next time."""

    changed: bool
    etag: str | None
    checks: tuple[CommitCheck, ...]
    rate: RateLimit


class RateLimited(ForgeError):
    """GitHub refused the call for the rate limit (403 or 429). ``wait_s``: how long it
    asks to wait (``Retry-After``, or until ``X-RateLimit-Reset``; None when it said
    neither)."""

    code = "rate_limited"

    def __init__(self, message: str, *, status: int, rate: RateLimit, wait_s: float | None):
        super().__init__(message, status=status, retriable=True)
        self.rate = rate
        self.wait_s = wait_s


def status_reporter(creator: Any) -> tuple[str | None, str | None]:
    """(app, user) of a commit status from its ``creator``: an App when it is the App's bot
    (``<slug>[bot]``, type ``Bot``), as ingest reads a ``status`` delivery's sender."""
    if not isinstance(creator, dict) or not isinstance(creator.get("login"), str):
        return None, None
    login: str = creator["login"]
    if creator.get("type") == "Bot" and login.endswith("[bot]"):
        return login.removesuffix("[bot]"), login
    return None, login


def _conclusion(status: Any, conclusion: Any) -> CheckState:
    if status != "completed" or not isinstance(conclusion, str):
        return "pending"
    return "success" if conclusion in _PASSING else "failure"


def _slug(app: Any) -> str | None:
    return app.get("slug") if isinstance(app, dict) and isinstance(app.get("slug"), str) else None


def parse_statuses(doc: Any) -> tuple[CommitCheck, ...]:
    """``GET …/commits/{sha}/statuses``: every status, newest first, with its creator."""
    if not isinstance(doc, list):
        raise ForgeError("GitHub answered a status list that is not a list", retriable=False)
    found = []
    for item in doc:
        if not isinstance(item, dict) or item.get("state") not in _STATES:
            continue
        context = item.get("context")
        if not isinstance(context, str) or not context:
            continue
        app, user = status_reporter(item.get("creator"))
        found.append(CommitCheck(context, item["state"], "status", app, user))
    return tuple(found)


def _newest_first(items: list[Any], *stamps: str) -> list[dict[str, Any]]:
    dicts = [i for i in items if isinstance(i, dict)]
    return sorted(dicts, key=lambda i: max(str(i.get(s) or "") for s in stamps), reverse=True)


def parse_check_runs(doc: Any) -> tuple[CommitCheck, ...]:
    """``GET …/commits/{sha}/check-runs``: each run, newest first."""
    runs = doc.get("check_runs") if isinstance(doc, dict) else None
    if not isinstance(runs, list):
        raise ForgeError("GitHub answered check runs without a check_runs list", retriable=False)
    found = []
    for run in _newest_first(runs, "completed_at", "started_at"):
        name = run.get("name")
        if not isinstance(name, str) or not name:
            continue
        suite = run.get("check_suite")
        branch = suite.get("head_branch") if isinstance(suite, dict) else None
        state = _conclusion(run.get("status"), run.get("conclusion"))
        found.append(
            CommitCheck(name, state, "check_run", _slug(run.get("app")), None, branch or None)
        )
    return tuple(found)


def parse_check_suites(doc: Any) -> tuple[CommitCheck, ...]:
    """``GET …/commits/{sha}/check-suites``: each suite as ``check_suite:<app>``."""
    suites = doc.get("check_suites") if isinstance(doc, dict) else None
    if not isinstance(suites, list):
        raise ForgeError("GitHub answered check suites without a list", retriable=False)
    found = []
    for suite in _newest_first(suites, "updated_at", "created_at"):
        app: dict[str, Any] = suite["app"] if isinstance(suite.get("app"), dict) else {}
        label = app.get("slug") or app.get("name") or "unknown"
        state = _conclusion(suite.get("status"), suite.get("conclusion"))
        branch = suite.get("head_branch")
        found.append(
            CommitCheck(
                f"check_suite:{label}",
                state,
                "check_suite",
                _slug(app),
                None,
                branch if isinstance(branch, str) and branch else None,
            )
        )
    return tuple(found)


class GitHubChecks:
    """Conditional reads of a commit's checks on GitHub (or GitHub Enterprise's /api/v3)."""

    def __init__(
        self,
        api_url: str = "https://api.github.com",
        *,
        token: SecretStr | TokenSource,
        timeout_s: float = 10.0,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._tokens: TokenSource = StaticToken(token) if isinstance(token, SecretStr) else token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._last_secret = ""

    async def close(self) -> None:
        """Close the HTTP session, if one was opened, and the token source. Safe to call
        more than once."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._tokens.close()

    async def statuses(self, full_name: str, sha: str, etag: str | None = None) -> Answer:
        """Every commit status of ``sha`` (the list, unlike the combined status, names each
        status's creator, which a required check naming its reporter needs)."""
        return await self._read(full_name, sha, "statuses", etag, parse_statuses)

    async def check_runs(self, full_name: str, sha: str, etag: str | None = None) -> Answer:
        """The latest check run of each name on ``sha``."""
        return await self._read(full_name, sha, "check-runs", etag, parse_check_runs)

    async def check_suites(self, full_name: str, sha: str, etag: str | None = None) -> Answer:
        """The check suites of ``sha``."""
        return await self._read(full_name, sha, "check-suites", etag, parse_check_suites)

    async def _read(
        self,
        full_name: str,
        sha: str,
        what: str,
        etag: str | None,
        parse: Callable[[Any], tuple[CommitCheck, ...]],
    ) -> Answer:
        path = f"{_repo_path(full_name)}/commits/{sha}/{what}"
        params = {"per_page": "100"}
        if what == "check-runs":
            params["filter"] = "latest"
        token = await self._tokens.token()
        self._last_secret = token.get_secret_value()
        headers = {"Authorization": f"Bearer {self._last_secret}"}
        if etag:
            headers["If-None-Match"] = etag
        try:
            async with self._client().get(
                f"{self._api_url}/{path}", params=params, headers=headers
            ) as resp:
                rate = RateLimit.from_headers(resp.headers)
                logger.debug("github GET /%s -> %d", path, resp.status)
                if resp.status == 304:
                    return Answer(False, etag, (), rate)
                try:
                    doc: Any = await resp.json(content_type=None)
                except ValueError:
                    doc = None
                if resp.status in (403, 429) and _rate_limited(resp.status, rate):
                    raise RateLimited(
                        self._scrub(f"GitHub GET /{path} rate limited ({resp.status})"),
                        status=resp.status,
                        rate=rate,
                        wait_s=_wait_of(rate),
                    )
                if resp.status == 401:
                    self._tokens.refused(token)  # an App's next call gets a new one
                if resp.status != 200:
                    message = doc.get("message", "") if isinstance(doc, dict) else ""
                    raise ForgeError(
                        self._scrub(f"GitHub GET /{path} -> {resp.status}: {message}"[:400]),
                        status=resp.status,
                    )
                return Answer(True, resp.headers.get("ETag"), parse(doc), rate)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ForgeError(
                self._scrub(f"GitHub GET /{path} got no answer: {type(exc).__name__} {exc}")
            ) from None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": API_VERSION,
                    "User-Agent": "waveline-reconciler",
                },
            )
        return self._session

    def _scrub(self, text: str) -> str:
        return text.replace(self._last_secret, "***") if self._last_secret else text


def _rate_limited(status: int, rate: RateLimit) -> bool:
    """A 429 always is; a 403 is when it says so (a 403 may also be a permission refusal)."""
    return status == 429 or rate.remaining == 0 or rate.retry_after_s is not None


def _wait_of(rate: RateLimit, now: float | None = None) -> float | None:
    if rate.retry_after_s is not None:
        return rate.retry_after_s
    if rate.remaining == 0 and rate.reset_at is not None:
        return max(0.0, rate.reset_at - (time.time() if now is None else now))
    return None
