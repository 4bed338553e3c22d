"""The fake GitHub's commit checks (``FakeGitHub.checks``): commit statuses, check runs and
check suites, read the way GitHub's REST API (2022-11-28) answers them.

- ``GET /repos/{o}/{r}/commits/{ref}/statuses`` (newest first, each with its ``creator``),
  ``…/status`` (the combined view, without creators), ``…/check-runs`` (``filter=latest``
  by default: the newest run of each name) and ``…/check-suites``; 422 "No commit found"
  for a sha the repository does not have, 422 for ``per_page`` over 100.
- Every answer carries an ``ETag`` (weak, of the body); a request whose ``If-None-Match``
  matches is answered 304 and costs no budget, as on GitHub.
- A rate-limit budget per fake: every answer carries ``X-RateLimit-Limit``,
  ``-Remaining``, ``-Reset``, ``-Used`` and ``-Resource``; a call past the budget is
  answered 403 with ``X-RateLimit-Remaining: 0`` until the window resets. ``throttle``
  answers the next calls 403 or 429 with ``Retry-After`` (a secondary rate limit).

Authentication is the FakeGitHub middleware's, before these handlers run. Tests change the
state with ``set_status``, ``set_check_run`` and ``set_check_suite``; ``calls`` records what
each read was answered.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygit2
from aiohttp import web

DOCS = "https://docs.github.com/rest/commits/statuses"
_STATES = {"pending", "success", "failure", "error"}


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Call:
    """One read of checks: its path, the status it was answered with, and when (Unix)."""

    path: str
    status: int
    at: float


class FakeChecks:
    def __init__(self, repos: dict[str, Path]) -> None:
        self._repos = repos
        self._ids = itertools.count(7_000_001)
        self._statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._suites: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.limit = 5000
        self.window_s = 3600.0
        self.used = 0
        self.reset_at = time.time() + self.window_s
        self._throttles: list[tuple[int, float]] = []  # (status, Retry-After), one per call
        self.calls: list[Call] = []
        # The calls charged in each budget window that ended (the current one: ``used``).
        self.windows: list[int] = []

    # -- test controls ---------------------------------------------------------------------

    def set_status(
        self,
        full_name: str,
        sha: str,
        context: str,
        state: str,
        *,
        creator: str = "ci-bot",
        creator_type: str = "User",
    ) -> None:
        """Create a commit status as ``creator`` would (``<slug>[bot]``, type ``Bot`` for an
        App)."""
        assert state in _STATES, state
        now = _stamp()
        ident = next(self._ids)
        self._statuses.setdefault((full_name, sha), []).insert(
            0,
            {
                "url": f"/repos/{full_name}/statuses/{sha}",
                "avatar_url": None,
                "id": ident,
                "node_id": f"SC_{ident}",
                "state": state,
                "description": f"{context} is {state}",
                "target_url": None,
                "context": context,
                "created_at": now,
                "updated_at": now,
                "creator": {"login": creator, "id": 1, "type": creator_type},
            },
        )

    def set_check_run(
        self,
        full_name: str,
        sha: str,
        name: str,
        status: str,
        conclusion: str | None = None,
        *,
        app: str = "ci-app",
    ) -> None:
        """A check run of ``app`` named ``name`` (a new run: it becomes the latest)."""
        now = _stamp()
        ident = next(self._ids)
        self._runs.setdefault((full_name, sha), []).insert(
            0,
            {
                "id": ident,
                "node_id": f"CR_{ident}",
                "head_sha": sha,
                "external_id": "",
                "url": f"/repos/{full_name}/check-runs/{ident}",
                "status": status,
                "conclusion": conclusion if status == "completed" else None,
                "started_at": now,
                "completed_at": now if status == "completed" else None,
                "name": name,
                "check_suite": {"id": 1},
                "app": _app(app),
                "pull_requests": [],
            },
        )

    def set_check_suite(
        self,
        full_name: str,
        sha: str,
        status: str,
        conclusion: str | None = None,
        *,
        app: str = "ci-app",
        head_branch: str = "auto",
    ) -> None:
        """The check suite of ``app`` on ``sha`` (replacing that App's earlier one)."""
        suites = self._suites.setdefault((full_name, sha), [])
        suites[:] = [s for s in suites if s["app"]["slug"] != app]
        ident = next(self._ids)
        suites.insert(
            0,
            {
                "id": ident,
                "node_id": f"CS_{ident}",
                "head_branch": head_branch,
                "head_sha": sha,
                "status": status,
                "conclusion": conclusion if status == "completed" else None,
                "app": _app(app),
                "created_at": _stamp(),
                "updated_at": _stamp(),
                "pull_requests": [],
            },
        )

    def set_budget(self, limit: int, window_s: float) -> None:
        """A budget of ``limit`` calls per ``window_s`` seconds, starting now."""
        self.limit, self.window_s, self.used = limit, window_s, 0
        self.reset_at = time.time() + window_s

    def throttle(self, status: int = 429, retry_after_s: float = 1.0, times: int = 1) -> None:
        """Answer the next ``times`` reads ``status`` with ``Retry-After``."""
        self._throttles += [(status, retry_after_s)] * times

    # -- HTTP ------------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        base = "/repos/{owner}/{repo}/commits/{ref}"
        app.router.add_get(base + "/statuses", self._list_statuses)
        app.router.add_get(base + "/status", self._combined)
        app.router.add_get(base + "/check-runs", self._check_runs)
        app.router.add_get(base + "/check-suites", self._check_suites)

    def _headers(self) -> dict[str, str]:
        now = time.time()
        if now >= self.reset_at:
            self.windows.append(self.used)
            self.used, self.reset_at = 0, now + self.window_s
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - self.used)),
            "X-RateLimit-Reset": str(math.ceil(self.reset_at)),
            "X-RateLimit-Used": str(self.used),
            "X-RateLimit-Resource": "core",
        }

    def _answer(self, request: web.Request, doc: Any) -> web.Response:
        """The answer to a read of ``doc``: throttled, over budget, 304 or 200."""
        path = request.path
        headers = self._headers()
        if self._throttles:
            status, wait = self._throttles.pop(0)
            self.calls.append(Call(path, status, time.time()))
            message = "You have exceeded a secondary rate limit. Please wait a few minutes."
            return web.json_response(
                {"message": message, "documentation_url": DOCS},
                status=status,
                headers={**headers, "Retry-After": str(math.ceil(wait))},
            )
        body = json.dumps(doc).encode()
        etag = f'W/"{hashlib.sha256(body).hexdigest()[:40]}"'
        if etag in request.headers.get("If-None-Match", ""):
            self.calls.append(Call(path, 304, time.time()))
            return web.Response(status=304, headers={**headers, "ETag": etag})
        if self.used >= self.limit:
            self.calls.append(Call(path, 403, time.time()))
            message = "API rate limit exceeded for installation. Wait for the reset."
            return web.json_response(
                {"message": message, "documentation_url": DOCS},
                status=403,
                headers={**headers, "X-RateLimit-Remaining": "0"},
            )
        self.used += 1
        self.calls.append(Call(path, 200, time.time()))
        return web.Response(
            body=body,
            content_type="application/json",
            headers={**self._headers(), "ETag": etag},
        )

    def _commit(self, request: web.Request) -> tuple[str, str] | web.Response:
        """(full name, sha) of the request, or GitHub's 404/422 answer."""
        full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if full_name not in self._repos:
            return web.json_response(
                {"message": "Not Found", "documentation_url": DOCS}, status=404
            )
        per_page = request.query.get("per_page", "30")
        if not per_page.isdigit() or not 1 <= int(per_page) <= 100:
            return web.json_response(
                {"message": "per_page must be between 1 and 100", "documentation_url": DOCS},
                status=422,
            )
        ref = request.match_info["ref"]
        repo = pygit2.Repository(str(self._repos[full_name]))
        try:
            commit = repo.revparse_single(ref).peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError):
            return web.json_response(
                {"message": f"No commit found for SHA: {ref}", "documentation_url": DOCS},
                status=422,
            )
        return full_name, str(commit.id)

    async def _list_statuses(self, request: web.Request) -> web.Response:
        found = self._commit(request)
        if isinstance(found, web.Response):
            return found
        return self._answer(request, self._statuses.get(found, []))

    async def _combined(self, request: web.Request) -> web.Response:
        found = self._commit(request)
        if isinstance(found, web.Response):
            return found
        latest: dict[str, dict[str, Any]] = {}
        for status in self._statuses.get(found, []):
            latest.setdefault(status["context"], status)
        # The combined view's statuses carry no creator.
        statuses = [{k: v for k, v in s.items() if k != "creator"} for s in latest.values()]
        states = {s["state"] for s in statuses}
        state = (
            "failure"
            if states & {"failure", "error"}
            else "pending"
            if not statuses or "pending" in states
            else "success"
        )
        doc = {"state": state, "statuses": statuses, "sha": found[1], "total_count": len(statuses)}
        return self._answer(request, doc)

    async def _check_runs(self, request: web.Request) -> web.Response:
        found = self._commit(request)
        if isinstance(found, web.Response):
            return found
        runs = self._runs.get(found, [])
        if request.query.get("filter", "latest") == "latest":
            newest: dict[str, dict[str, Any]] = {}
            for run in runs:
                newest.setdefault(run["name"], run)
            runs = list(newest.values())
        return self._answer(request, {"total_count": len(runs), "check_runs": runs})

    async def _check_suites(self, request: web.Request) -> web.Response:
        found = self._commit(request)
        if isinstance(found, web.Response):
            return found
        suites = self._suites.get(found, [])
        return self._answer(request, {"total_count": len(suites), "check_suites": suites})


def _app(slug: str) -> dict[str, Any]:
    return {"id": 99, "slug": slug, "name": slug.upper(), "owner": {"login": "acme"}}
