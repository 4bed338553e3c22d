"""GitLab REST API v4 client for promotion by merge request (gitlab.com or self-managed).

A project is addressed by its URL-encoded path (``group%2Fsub%2Fname``), so the config names
it as it reads in the browser. The project access token travels only in ``PRIVATE-TOKEN``
and is scrubbed from any message built from an answer. Every failure is a ``ForgeError``
whose ``retriable`` follows the HTTP status (429 and 5xx retry, other 4xx are permanent).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr
from yarl import URL

from waveline.shared.forge.base import (
    MERGE_METHODS,
    ForgeError,
    HeadChanged,
    PullRequest,
    PullRequestNotMergeable,
)

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "https://gitlab.com/api/v4"
# A project path: namespaces (groups, subgroups) then the project, as GitLab allows them.
_PROJECT = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+$")
_MAX_DETAIL = 300
# GitLab refuses a merge with 405 (not mergeable now: draft, closed, pipeline required),
# 406 (older versions: already merged or closed) or 422 (the merge itself failed).
_NOT_MERGEABLE = frozenset({405, 406, 422})


class GitLabForge:
    """``Forge`` over GitLab's merge requests. ``number`` is the merge request's ``iid``."""

    def __init__(
        self,
        api_url: str = DEFAULT_API_URL,
        *,
        token: SecretStr,
        timeout_s: float = 10.0,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> GitLabForge:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session, if one was opened. Safe to call more than once."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def open_or_update_pull_request(
        self, repo_full_name: str, head: str, base: str, title: str, body: str
    ) -> PullRequest:
        """POST a merge request; on GitLab's 409 (one is open for the branch pair), find it
        and PUT the new title and description. Safe to retry after a lost answer."""
        project = _project_path(repo_full_name)
        payload = {
            "source_branch": head,
            "target_branch": base,
            "title": title,
            "description": body,
        }
        # Two rounds: the open merge request may be closed between our POST and our GET.
        for _ in range(2):
            status, doc = await self._send("POST", f"{project}/merge_requests", json=payload)
            if status == 201:
                created = merge_request(doc, created=True)
                logger.info("opened merge request %s!%d", repo_full_name, created.number)
                return created
            if status != 409:
                raise self._failure("POST", f"{project}/merge_requests", status, doc)
            params = {"state": "opened", "source_branch": head, "target_branch": base}
            found = await self._call("GET", f"{project}/merge_requests", params=params)
            if not isinstance(found, list):
                raise ForgeError(
                    "GitLab answered a merge request list that is not a list", retriable=False
                )
            if found:
                iid = merge_request(found[0], created=False).number
                updated = await self._call(
                    "PUT",
                    f"{project}/merge_requests/{iid}",
                    json={"title": title, "description": body},
                )
                logger.info("updated merge request %s!%d", repo_full_name, iid)
                return merge_request(updated, created=False)
        raise ForgeError(
            f"GitLab reports a merge request from {head} into {base} but lists none open",
            retriable=True,
        )

    async def get_pull_request(self, repo_full_name: str, number: int) -> PullRequest:
        """GET one merge request by iid."""
        path = f"{_project_path(repo_full_name)}/merge_requests/{int(number)}"
        return merge_request(await self._call("GET", path), created=False)

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
        """PUT .../merge guarded by ``sha``; the commit now on the target branch, or None
        when ``when_checks_pass`` scheduled the merge for when the pipeline succeeds.

        ``squash`` squashes; ``merge`` follows the project's merge method (merge commit or
        fast-forward); ``rebase`` is a project setting on GitLab, refused here. 409 raises
        ``HeadChanged``; 405, 406 and 422 raise ``PullRequestNotMergeable``.
        """
        if method not in MERGE_METHODS or method == "rebase":
            raise ForgeError(
                f"merge method {method!r} is not one GitLab takes per merge: use merge or"
                " squash (fast-forward and rebase are the project's merge method setting)",
                retriable=False,
            )
        path = f"{_project_path(repo_full_name)}/merge_requests/{int(number)}/merge"
        payload: dict[str, Any] = {"sha": sha, "squash": method == "squash"}
        text = "\n\n".join(t for t in (commit_title, commit_message) if t)
        if text:
            payload["squash_commit_message" if method == "squash" else "merge_commit_message"] = (
                text
            )
        if when_checks_pass:
            # auto_merge since GitLab 17.11; merge_when_pipeline_succeeds before it.
            payload["auto_merge"] = payload["merge_when_pipeline_succeeds"] = True
        status, doc = await self._send("PUT", path, json=payload)
        what = f"merge request {repo_full_name}!{number}"
        if status in _NOT_MERGEABLE:
            raise PullRequestNotMergeable(
                self._describe(f"{what} is not mergeable ({status})", doc), status=status
            )
        if status == 409:
            raise HeadChanged(self._describe(f"{what} head is not {sha}", doc), status=409)
        if status != 200:
            raise self._failure("PUT", path, status, doc)
        result = merge_request(doc, created=False)
        if result.merged and result.merge_commit_sha is not None:
            logger.info("merged %s as %s", what, result.merge_commit_sha)
            return result.merge_commit_sha
        if when_checks_pass and result.state == "open" and _scheduled(doc):
            logger.info("%s will merge when its pipeline succeeds", what)
            return None
        raise ForgeError(f"GitLab answered an unexpected merge result for {what}", status=200)

    # -- transport -----------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, headers={"User-Agent": "waveline"}
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
        """One request: (status, parsed JSON or None). Raises ForgeError only on no answer."""
        # Per request rather than on the session, so the secret is not kept in a second place.
        auth = {"PRIVATE-TOKEN": self._token.get_secret_value()}
        # The path is already encoded (%2F in the project id): keep aiohttp from re-quoting.
        url = f"{self._api_url}/{path}"
        try:
            async with self._client().request(
                method, URL(url, encoded=True), json=json, params=params, headers=auth
            ) as resp:
                try:
                    doc: Any = await resp.json(content_type=None)
                except ValueError:
                    doc = None
                logger.debug("gitlab %s /%s -> %d", method, path, resp.status)
                return resp.status, doc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ForgeError(
                self._scrub(f"GitLab {method} /{path} got no answer: {type(exc).__name__} {exc}")
            ) from None

    def _failure(self, method: str, path: str, status: int, doc: Any) -> ForgeError:
        return ForgeError(
            self._describe(f"GitLab {method} /{path} -> {status}", doc), status=status
        )

    def _describe(self, what: str, doc: Any) -> str:
        """``what`` plus GitLab's ``message`` or ``error`` (a string, list or field map)."""
        if isinstance(doc, dict):
            detail = _error_text(doc.get("message", doc.get("error", "")))
            if detail.strip():
                what = f"{what}: {detail.strip()[:_MAX_DETAIL]}"
        return self._scrub(what)

    def _scrub(self, text: str) -> str:
        secret = self._token.get_secret_value()
        return text.replace(secret, "***") if secret else text


def _project_path(full_path: str) -> str:
    """``projects/<id>`` for a project path, the path URL-encoded as one segment."""
    if not _PROJECT.fullmatch(full_path) or ".." in full_path:
        raise ForgeError(
            f"project path {full_path!r} is not namespace/project (group/sub/name)",
            retriable=False,
        )
    return f"projects/{quote(full_path, safe='')}"


def _error_text(message: Any) -> str:
    if isinstance(message, list):
        return "; ".join(str(m) for m in message)
    if isinstance(message, dict):
        return "; ".join(f"{k} {_error_text(v)}" for k, v in message.items())
    return str(message)


def _scheduled(doc: Any) -> bool:
    return isinstance(doc, dict) and bool(
        doc.get("merge_when_pipeline_succeeds") or doc.get("auto_merge_enabled")
    )


def merge_request(doc: Any, *, created: bool) -> PullRequest:
    """Read GitLab's merge request object (single or list form) as a ``PullRequest``.

    ``opened`` and ``locked`` (a merge in progress) are open; ``closed`` and ``merged`` are
    closed, ``merged`` with the commit it put on the target branch: the merge commit, else
    the squash commit, else (a fast-forward merge) the head itself.
    """
    try:
        gl_state = str(doc["state"])
        merged = gl_state == "merged"
        state: Literal["open", "closed"] = "closed" if gl_state in ("closed", "merged") else "open"
        head_sha = doc["sha"]
        if not isinstance(head_sha, str):
            raise TypeError("sha is not a string")
        landed = doc.get("merge_commit_sha") or doc.get("squash_commit_sha") or head_sha
        return PullRequest(
            number=int(doc["iid"]),
            url=str(doc["web_url"]),
            state=state,
            merged=merged,
            head_ref=str(doc["source_branch"]),
            head_sha=head_sha,
            base_ref=str(doc["target_branch"]),
            merge_commit_sha=str(landed) if merged else None,
            created=created,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ForgeError(
            f"GitLab answered an unexpected merge request shape: {exc!r}", retriable=False
        ) from None
