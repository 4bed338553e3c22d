"""GitHub REST client for promotion by pull request (API version 2022-11-28).

One aiohttp session per client, created on first use inside the running loop. Every failure
is a ``ForgeError`` whose ``retriable`` follows the HTTP status; the token only ever travels in
the ``Authorization`` header and is scrubbed from any message built from an answer. The token
is fixed, or drawn from a ``TokenSource`` (a GitHub App's installation tokens, github_app.py)
before every request; a 401 hands it back to the source and the request is sent once more
with a fresh one.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr

from waveline.shared.forge.base import (
    MERGE_METHODS,
    ForgeError,
    HeadChanged,
    PullRequest,
    PullRequestNotMergeable,
)
from waveline.shared.forge.github_app import StaticToken, TokenSource

logger = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
_FULL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_MAX_DETAIL = 300
# GitHub's limits on a repository_dispatch event.
DISPATCH_EVENT_TYPE_MAX = 100
DISPATCH_MAX_PROPERTIES = 10


class GitHubForge:
    """``Forge`` over GitHub's REST API (github.com or GitHub Enterprise's ``/api/v3``)."""

    def __init__(
        self,
        api_url: str = "https://api.github.com",
        *,
        token: SecretStr | TokenSource,
        timeout_s: float = 10.0,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._tokens: TokenSource = StaticToken(token) if isinstance(token, SecretStr) else token
        # The tokens sent so far, to scrub from messages (a source's change over time).
        self._sent: set[str] = set()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GitHubForge:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (and the token source's), if opened. Safe to call more
        than once."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._tokens.close()

    async def open_or_update_pull_request(
        self, repo_full_name: str, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        """POST a new pull request; on GitHub's 422 "already exists", PATCH the open one.

        ``head`` is a branch of the repository itself (``owner:branch`` is accepted too). Safe
        to retry after a lost answer: a pull request that call created is found and updated.
        """
        repo = _repo_path(repo_full_name)
        owner = repo_full_name.split("/", 1)[0]
        # GitHub's list filter wants "owner:branch"; a plain branch means the repo's own owner.
        head_filter = head if ":" in head else f"{owner}:{head}"
        payload = {"title": title, "head": head, "base": base, "body": body}
        # Two rounds: the open pull request may be closed between our POST and our GET.
        for _ in range(2):
            status, doc = await self._send("POST", f"{repo}/pulls", json=payload)
            if status == 201:
                created = _pull_request(doc, created=True)
                logger.info("opened pull request %s#%d", repo_full_name, created.number)
                return created
            if not (status == 422 and _already_exists(doc)):
                raise self._failure("POST", f"{repo}/pulls", status, doc)
            params = {"head": head_filter, "base": base, "state": "open"}
            found = await self._call("GET", f"{repo}/pulls", params=params)
            if not isinstance(found, list):
                raise ForgeError(
                    "GitHub answered a pull request list that is not a list", retriable=False
                )
            if found:
                number = _pull_request(found[0], created=False).number
                patched = await self._call(
                    "PATCH", f"{repo}/pulls/{number}", json={"title": title, "body": body}
                )
                logger.info("updated pull request %s#%d", repo_full_name, number)
                return _pull_request(patched, created=False)
        raise ForgeError(
            f"GitHub reports a pull request for {head_filter} into {base} but lists none open",
            retriable=True,
        )

    async def get_pull_request(self, repo_full_name: str, number: int) -> PullRequest:
        """GET one pull request."""
        doc = await self._call("GET", f"{_repo_path(repo_full_name)}/pulls/{int(number)}")
        return _pull_request(doc, created=False)

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
    ) -> str:
        """PUT .../merge guarded by ``sha``; return the merge commit's sha.

        405 raises ``PullRequestNotMergeable``, 409 raises ``HeadChanged`` (both permanent).
        ``when_checks_pass`` is refused: GitHub schedules a merge only through GraphQL.
        """
        if when_checks_pass:
            raise ForgeError(
                "GitHub's REST API cannot merge when checks pass; use auto_merge", retriable=False
            )
        if method not in MERGE_METHODS:
            raise ForgeError(
                f"unknown merge method {method!r}; use one of {MERGE_METHODS}", retriable=False
            )
        path = f"{_repo_path(repo_full_name)}/pulls/{int(number)}/merge"
        payload: dict[str, str] = {"sha": sha, "merge_method": method}
        if commit_title is not None:
            payload["commit_title"] = commit_title
        if commit_message is not None:
            payload["commit_message"] = commit_message
        status, doc = await self._send("PUT", path, json=payload)
        if status == 405:
            raise PullRequestNotMergeable(
                self._describe(f"pull request {repo_full_name}#{number} is not mergeable", doc),
                status=405,
            )
        if status == 409:
            raise HeadChanged(
                self._describe(f"pull request {repo_full_name}#{number} head is not {sha}", doc),
                status=409,
            )
        if status != 200:
            raise self._failure("PUT", path, status, doc)
        merged_sha = doc.get("sha") if isinstance(doc, dict) else None
        if not isinstance(merged_sha, str) or not doc.get("merged", True):
            raise ForgeError(f"GitHub answered an unexpected merge result for {path}", status=200)
        logger.info("merged pull request %s#%d as %s", repo_full_name, number, merged_sha)
        return merged_sha

    async def repository_dispatch(
        self, repo_full_name: str, event_type: str, client_payload: dict[str, Any]
    ) -> None:
        """POST a ``repository_dispatch`` event (which triggers the repository's workflows
        ``on: repository_dispatch``); GitHub answers 204. Checked first, as GitHub would
        refuse them: ``event_type`` of 1-100 characters, at most 10 top-level properties in
        ``client_payload`` (permanent errors)."""
        if not 0 < len(event_type) <= DISPATCH_EVENT_TYPE_MAX:
            raise ForgeError(
                f"event_type must be 1-{DISPATCH_EVENT_TYPE_MAX} characters, got {len(event_type)}",
                retriable=False,
            )
        if len(client_payload) > DISPATCH_MAX_PROPERTIES:
            raise ForgeError(
                f"client_payload has {len(client_payload)} top-level properties; GitHub takes"
                f" at most {DISPATCH_MAX_PROPERTIES}",
                retriable=False,
            )
        path = f"{_repo_path(repo_full_name)}/dispatches"
        payload = {"event_type": event_type, "client_payload": client_payload}
        status, doc = await self._send("POST", path, json=payload)
        if status != 204:
            raise self._failure("POST", path, status, doc)
        logger.info("dispatched %s to %s", event_type, repo_full_name)

    # -- transport -----------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": API_VERSION,
                    "User-Agent": "waveline",
                },
            )
        return self._session

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Send and return the JSON document of a 2xx answer; raise ForgeError otherwise."""
        status, doc = await self._send(method, path, json=json, params=params)
        if not 200 <= status < 300:
            raise self._failure(method, path, status, doc)
        return doc

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request: (status, parsed JSON or None). Raises ForgeError only on no answer
        (or when the token source has no token). A 401 is retried once with a new token."""
        token = await self._tokens.token()
        status, doc = await self._send_once(method, path, token, json=json, params=params)
        if status == 401 and not isinstance(self._tokens, StaticToken):
            # An installation token revoked or expired early: the source mints another.
            self._tokens.refused(token)
            token = await self._tokens.token()
            status, doc = await self._send_once(method, path, token, json=json, params=params)
        return status, doc

    async def _send_once(
        self,
        method: str,
        path: str,
        token: SecretStr,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        secret = token.get_secret_value()
        if len(self._sent) > 64:
            self._sent.clear()  # a long-running source: only the recent ones can recur
        self._sent.add(secret)
        # Per request rather than on the session, so the secret is not kept in a second place.
        auth = {"Authorization": f"Bearer {secret}"}
        url = f"{self._api_url}/{path}"
        try:
            async with self._client().request(
                method, url, json=json, params=params, headers=auth
            ) as resp:
                try:
                    doc: Any = await resp.json(content_type=None)
                except ValueError:
                    doc = None
                logger.debug("github %s /%s -> %d", method, path, resp.status)
                if resp.status == 403 and _rate_limited(resp.headers):
                    # GitHub's primary and secondary rate limits answer 403: wait and retry.
                    raise ForgeError(
                        self._describe(f"GitHub {method} /{path} rate limited (403)", doc),
                        status=403,
                        retriable=True,
                    )
                return resp.status, doc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ForgeError(
                self._scrub(f"GitHub {method} /{path} got no answer: {type(exc).__name__} {exc}")
            ) from None

    def _failure(self, method: str, path: str, status: int, doc: Any) -> ForgeError:
        what = f"GitHub {method} /{path} -> {status}"
        return ForgeError(self._describe(what, doc), status=status)

    def _describe(self, what: str, doc: Any) -> str:
        """``what`` plus GitHub's message and validation errors, token scrubbed."""
        if isinstance(doc, dict):
            detail = str(doc.get("message", ""))
            errors = doc.get("errors")
            if isinstance(errors, list) and errors:
                detail += " " + "; ".join(_error_text(e) for e in errors)
            if detail.strip():
                what = f"{what}: {detail.strip()[:_MAX_DETAIL]}"
        return self._scrub(what)

    def _scrub(self, text: str) -> str:
        for secret in self._sent:
            if secret:
                text = text.replace(secret, "***")
        return text


def _repo_path(full_name: str) -> str:
    if not _FULL_NAME.fullmatch(full_name) or ".." in full_name:
        raise ForgeError(f"repository name {full_name!r} is not owner/name", retriable=False)
    owner, name = full_name.split("/", 1)
    return f"repos/{quote(owner)}/{quote(name)}"


def _already_exists(doc: Any) -> bool:
    """GitHub's 422 for a second pull request on the same head and base."""
    errors = doc.get("errors") if isinstance(doc, dict) else None
    return isinstance(errors, list) and any(
        isinstance(e, dict) and "pull request already exists" in str(e.get("message", "")).lower()
        for e in errors
    )


def _rate_limited(headers: Any) -> bool:
    return headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in headers


def _error_text(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    if "message" in error:
        return str(error["message"])
    return f"{error.get('field', '?')} {error.get('code', '?')}"


def _pull_request(doc: Any, *, created: bool) -> PullRequest:
    """Read GitHub's pull request object (full or the list's simple form)."""
    try:
        state: Literal["open", "closed"] = "open" if doc["state"] == "open" else "closed"
        # The list form has no "merged"; "merged_at" is set in both forms once merged.
        merged = doc["merged"] if "merged" in doc else doc.get("merged_at") is not None
        merge_sha = doc.get("merge_commit_sha")
        return PullRequest(
            number=int(doc["number"]),
            url=str(doc["html_url"]),
            state=state,
            merged=bool(merged),
            head_ref=str(doc["head"]["ref"]),
            head_sha=str(doc["head"]["sha"]),
            base_ref=str(doc["base"]["ref"]),
            # While open GitHub fills it with a throwaway test merge: only a merge counts.
            merge_commit_sha=merge_sha if merged and isinstance(merge_sha, str) else None,
            created=created,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ForgeError(
            f"GitHub answered an unexpected pull request shape: {exc!r}", retriable=False
        ) from None
