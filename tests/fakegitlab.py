"""A fake GitLab REST API v4 for merge requests, backed by real bare git repositories.

Answers like GitLab for what promotion by merge request uses: ``PRIVATE-TOKEN`` auth (401
``{"message": "401 Unauthorized"}``), projects addressed by their URL-encoded path (an
unencoded slash is a 404, as on GitLab), 400 ``{"error": "title is missing"}`` for missing
parameters, 409 for a second open merge request on the same branches or a stale ``sha`` on
merge, 405 for a merge request that cannot be merged now, and merges that really move the
target branch. Test controls report pipelines and jobs, which GitLab's auto-merge ("merge
when pipeline succeeds") follows, and every change is delivered, awaited, as GitLab's
webhooks (``X-Gitlab-Token``, ``X-Gitlab-Event``) to an optional receiver.
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pygit2
from aiohttp import web

Hook = tuple[str, dict[str, Any]]  # (X-Gitlab-Event, payload)
_ROUTE = re.compile(r"^/api/v4/projects/([^/]+)/merge_requests(?:/(\d+)(/merge)?)?$")
_FINISHED = {"success", "failed", "canceled", "skipped"}


class FakeReply(Exception):
    """An answer instead of success, in GitLab's shape: ``message`` or ``error``."""

    def __init__(self, status: int, message: Any, *, key: str = "message") -> None:
        super().__init__(f"{status} {message}")
        self.status, self.doc = status, {key: message}


@dataclass(frozen=True)
class Recorded:
    method: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


@dataclass(frozen=True)
class Delivery:
    event: str
    payload: dict[str, Any]
    status: int | None  # the receiver's answer, None when unreachable


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class _MR:
    project: str
    iid: int
    title: str
    description: str
    source: str
    target: str
    sha: str
    state: str = "opened"  # opened, closed, merged
    merge_commit_sha: str | None = None
    squash_commit_sha: str | None = None
    auto_merge: bool = False
    id: int = 0
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)


def _tip(repo: pygit2.Repository, branch: str) -> pygit2.Oid | None:
    ref = repo.references.get(f"refs/heads/{branch}")
    target = ref.resolve().target if ref is not None else None
    return target if isinstance(target, pygit2.Oid) else None


class FakeGitLab:
    """``async with FakeGitLab({"grp/sub/cfg": bare}, token=T) as gl: GitLabForge(gl.api_url,
    ...)``. Branches are read from the bare repository on every request, so commits written
    to it directly show up like pushes (an open merge request's head moves: "update")."""

    def __init__(
        self,
        projects: dict[str, Path],
        *,
        token: str,
        webhook_url: str | None = None,
        webhook_token: str | None = None,
    ) -> None:
        self._projects = dict(projects)
        self._token = token
        self._webhook_url = webhook_url
        self._webhook_token = webhook_token
        self._mrs: dict[tuple[str, int], _MR] = {}
        self._pipelines: dict[tuple[str, str], str] = {}  # (project, sha) -> status
        self._ids = itertools.count(5_000_001)
        self._failures: list[tuple[int, int]] = []  # (status, times left)
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.url = self.api_url = ""
        self.requests: list[Recorded] = []
        self.deliveries: list[Delivery] = []

    def send_webhooks_to(self, url: str, token: str | None = None) -> None:
        self._webhook_url, self._webhook_token = url, token or self._webhook_token

    async def __aenter__(self) -> FakeGitLab:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self.api_url = f"{self.url}/api/v4"
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test controls ---------------------------------------------------------------------

    def fail_next(self, status: int = 502, *, times: int = 1) -> None:
        self._failures.append((status, times))

    def iids(self, project: str) -> list[int]:
        return sorted(iid for name, iid in self._mrs if name == project)

    def merge_request(self, project: str, iid: int) -> dict[str, Any]:
        return self._doc(self._find(project, iid))

    async def merge(self, project: str, iid: int) -> str:
        """Merge as a human pressing the button would; returns the new target tip."""
        mr = self._find(project, iid)
        await self._deliver(self._sync(project))
        if mr.state != "opened":
            raise FakeReply(405, "405 Method Not Allowed")
        return await self._do_merge(mr, squash=False, message=None)

    async def close(self, project: str, iid: int) -> None:
        mr = self._find(project, iid)
        if mr.state == "opened":
            mr.state, mr.updated_at = "closed", _now()
            await self._deliver([self._mr_hook("close", mr)])

    async def pipeline(
        self,
        project: str,
        sha: str,
        status: str,
        *,
        ref: str = "auto",
        name: str | None = None,
        builds: dict[str, str] | None = None,
    ) -> None:
        """A pipeline of ``sha`` reaches ``status`` (its jobs: ``builds``): a Pipeline Hook,
        and the merge of a merge request waiting for it (auto-merge)."""
        self._pipelines[(project, sha)] = status
        now = _now().replace("T", " ").replace(".000Z", " UTC")
        payload = {
            "object_kind": "pipeline",
            "object_attributes": {
                "id": next(self._ids),
                "iid": next(self._ids),
                "name": name,
                "ref": ref,
                "tag": False,
                "sha": sha,
                "before_sha": "0" * 40,
                "source": "push",
                "status": status,
                "detailed_status": status,
                "stages": ["test"],
                "created_at": now,
                "finished_at": now if status in _FINISHED else None,
            },
            "merge_request": None,
            "user": {"id": 1, "name": "CI", "username": "ci"},
            "project": self._project_doc(project),
            "commit": {"id": sha, "message": "commit", "timestamp": _now()},
            "builds": [
                {"id": next(self._ids), "stage": "test", "name": n, "status": s, "user": None}
                for n, s in (builds or {}).items()
            ],
        }
        await self._deliver([("Pipeline Hook", payload)])
        if status == "success":
            for mr in list(self._mrs.values()):
                if (mr.project, mr.sha, mr.state, mr.auto_merge) == (project, sha, "opened", True):
                    await self._do_merge(mr, squash=False, message=None)

    async def job(self, project: str, sha: str, name: str, status: str, ref: str = "auto") -> None:
        """A job (or an external commit status) of ``sha`` reaches ``status``: a Job Hook."""
        payload = {
            "object_kind": "build",
            "ref": ref,
            "tag": False,
            "before_sha": "0" * 40,
            "sha": sha,
            "build_id": next(self._ids),
            "build_name": name,
            "build_stage": "test",
            "build_status": status,
            "pipeline_id": next(self._ids),
            "project_id": 1,
            "project_name": project.replace("/", " / "),
            "user": {"id": 1, "name": "CI", "username": "ci"},
            "commit": {"id": next(self._ids), "sha": sha, "status": status},
            "repository": {"name": project.rsplit("/", 1)[-1], "homepage": self._web(project)},
            "project": self._project_doc(project),
        }
        await self._deliver([("Job Hook", payload)])

    # -- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        path = request.raw_path.split("?", 1)[0]
        self.requests.append(
            Recorded(request.method, path, dict(request.query), dict(request.headers), body)
        )
        try:
            if self._failures:
                status, times = self._failures[0]
                self._failures = [(status, times - 1)] * (times > 1) + self._failures[1:]
                raise FakeReply(status, f"{status} Injected")
            if not hmac.compare_digest(
                request.headers.get("PRIVATE-TOKEN", "").encode(), self._token.encode()
            ):
                raise FakeReply(401, "401 Unauthorized")
            if not isinstance(body, dict):
                raise FakeReply(400, "body is not a JSON object", key="error")
            return await self._route(request.method, path, {**dict(request.query), **body})
        except FakeReply as reply:
            return web.json_response(reply.doc, status=reply.status)

    async def _route(self, method: str, path: str, params: dict[str, Any]) -> web.Response:
        match = _ROUTE.fullmatch(path)
        if match is None:
            raise FakeReply(404, "404 Not Found")
        project = unquote(match.group(1))
        if project not in self._projects:
            raise FakeReply(404, "404 Project Not Found")
        await self._deliver(self._sync(project))
        iid, merge = match.group(2), match.group(3)
        if iid is None and method == "POST":
            return await self._create(project, params)
        if iid is None and method == "GET":
            return web.json_response([self._doc(m) for m in self._list(project, params)])
        if iid is not None and merge is None and method in ("GET", "PUT"):
            mr = self._find(project, int(iid))
            if method == "PUT":
                await self._update(mr, params)
            return web.json_response(self._doc(mr))
        if iid is not None and merge and method == "PUT":
            return await self._merge_route(self._find(project, int(iid)), params)
        raise FakeReply(405, "405 Method Not Allowed")

    def _list(self, project: str, params: dict[str, Any]) -> list[_MR]:
        state = params.get("state", "all")
        found = [
            m
            for m in self._mrs.values()
            if m.project == project
            and state in ("all", m.state)
            and params.get("source_branch", m.source) == m.source
            and params.get("target_branch", m.target) == m.target
        ]
        return sorted(found, key=lambda m: -m.iid)

    async def _create(self, project: str, params: dict[str, Any]) -> web.Response:
        missing = [f for f in ("source_branch", "target_branch", "title") if not params.get(f)]
        if missing:
            raise FakeReply(400, ", ".join(f"{f} is missing" for f in missing), key="error")
        source, target = str(params["source_branch"]), str(params["target_branch"])
        repo = pygit2.Repository(str(self._projects[project]))
        head = _tip(repo, source)
        if head is None or _tip(repo, target) is None:
            raise FakeReply(422, [f"Source branch {source!r} or target branch does not exist"])
        if source == target:
            raise FakeReply(422, ["You can't use same project/branch for source and target"])
        taken = self._list(
            project, {"state": "opened", "source_branch": source, "target_branch": target}
        )
        if taken:
            raise FakeReply(
                409,
                [
                    "Another open merge request already exists for this source branch:"
                    f" !{taken[0].iid}"
                ],
            )
        iid = 1 + max((i for name, i in self._mrs if name == project), default=0)
        mr = _MR(
            project,
            iid,
            str(params["title"]),
            str(params.get("description") or ""),
            source,
            target,
            str(head),
            id=next(self._ids),
        )
        self._mrs[(project, iid)] = mr
        await self._deliver([self._mr_hook("open", mr)])
        return web.json_response(self._doc(mr), status=201)

    async def _update(self, mr: _MR, params: dict[str, Any]) -> None:
        edits = {k: str(params[k]) for k in ("title", "description") if k in params}
        event = params.get("state_event")
        if event not in (None, "close", "reopen"):
            raise FakeReply(400, "state_event does not have a valid value", key="error")
        for key, value in edits.items():
            setattr(mr, key, value)
        mr.updated_at = _now()
        if event == "close" and mr.state == "opened":
            mr.state = "closed"
            await self._deliver([self._mr_hook("close", mr)])
        elif event == "reopen" and mr.state == "closed":
            mr.state = "opened"
            await self._deliver([self._mr_hook("reopen", mr)])
        elif edits:
            await self._deliver([self._mr_hook("update", mr)])

    async def _merge_route(self, mr: _MR, params: dict[str, Any]) -> web.Response:
        if mr.state != "opened":
            raise FakeReply(405, "405 Method Not Allowed")
        sha = params.get("sha")
        if sha is not None and sha != mr.sha:
            raise FakeReply(409, f"SHA does not match HEAD of source branch: {mr.sha}")
        if params.get("auto_merge") or params.get("merge_when_pipeline_succeeds"):
            status = self._pipelines.get((mr.project, mr.sha))
            if status is None or status in _FINISHED - {"success"}:
                raise FakeReply(405, "405 Method Not Allowed")  # no pipeline to wait for
            if status != "success":
                mr.auto_merge = True
                return web.json_response(self._doc(mr))
        message = params.get("squash_commit_message") or params.get("merge_commit_message")
        await self._do_merge(mr, squash=bool(params.get("squash")), message=message)
        return web.json_response(self._doc(mr))

    async def _do_merge(self, mr: _MR, *, squash: bool, message: str | None) -> str:
        """Write the merge (a merge commit, or one squashed commit) and move the target."""
        repo = pygit2.Repository(str(self._projects[mr.project]))
        head, base = _tip(repo, mr.source), _tip(repo, mr.target)
        if head is None or base is None:
            raise FakeReply(422, "Branch cannot be merged")
        ancestor = repo[repo.merge_base(head, base)].peel(pygit2.Tree)
        index = repo.merge_trees(
            ancestor, repo[base].peel(pygit2.Tree), repo[head].peel(pygit2.Tree)
        )
        if index.conflicts is not None:
            raise FakeReply(422, "Branch cannot be merged")
        tree = index.write_tree(repo)
        bot = pygit2.Signature("GitLab", "gitlab@example.com")
        default = (
            f"Merge branch '{mr.source}' into '{mr.target}'\n\n{mr.title}\n\n"
            f"See merge request {mr.project}!{mr.iid}"
        )
        text = message or (mr.title if squash else default)
        parents = [base] if squash else [base, head]
        oid = repo.create_commit(None, bot, bot, text, tree, parents)
        repo.references[f"refs/heads/{mr.target}"].set_target(oid)
        new = str(oid)
        mr.state, mr.sha, mr.auto_merge, mr.updated_at = "merged", str(head), False, _now()
        if squash:
            mr.squash_commit_sha = new
        else:
            mr.merge_commit_sha = new
        await self._deliver([self._mr_hook("merge", mr)])
        return new

    # -- documents and webhooks ------------------------------------------------------------

    def _find(self, project: str, iid: int) -> _MR:
        mr = self._mrs.get((project, iid))
        if mr is None:
            raise FakeReply(404, "404 Not found")
        return mr

    def _sync(self, project: str) -> list[Hook]:
        """An open merge request's head follows its source branch (GitLab: "update")."""
        repo = pygit2.Repository(str(self._projects[project]))
        hooks: list[Hook] = []
        for mr in self._mrs.values():
            head = _tip(repo, mr.source) if mr.project == project else None
            if mr.state == "opened" and head is not None and str(head) != mr.sha:
                mr.sha, mr.updated_at, mr.auto_merge = str(head), _now(), False
                hooks.append(self._mr_hook("update", mr))
        return hooks

    def _web(self, project: str) -> str:
        return f"{self.url}/{project}"

    def _project_doc(self, project: str) -> dict[str, Any]:
        return {
            "id": 1,
            "name": project.rsplit("/", 1)[-1],
            "web_url": self._web(project),
            "path_with_namespace": project,
            "default_branch": "master",
        }

    def _doc(self, mr: _MR) -> dict[str, Any]:
        return {
            "id": mr.id,
            "iid": mr.iid,
            "project_id": 1,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "created_at": mr.created_at,
            "updated_at": mr.updated_at,
            "target_branch": mr.target,
            "source_branch": mr.source,
            "source_project_id": 1,
            "target_project_id": 1,
            "draft": False,
            "merge_when_pipeline_succeeds": mr.auto_merge,
            "detailed_merge_status": "mergeable" if mr.state == "opened" else "not_open",
            "sha": mr.sha,
            "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": mr.squash_commit_sha,
            "references": {"short": f"!{mr.iid}", "full": f"{mr.project}!{mr.iid}"},
            "web_url": f"{self._web(mr.project)}/-/merge_requests/{mr.iid}",
        }

    def _mr_hook(self, action: str, mr: _MR) -> Hook:
        attributes = {
            **self._doc(mr),
            "action": action,
            "url": self._doc(mr)["web_url"],
            "last_commit": {"id": mr.sha, "message": "promotion", "timestamp": _now()},
        }
        payload = {
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "user": {"id": 1, "name": "Waveline", "username": "waveline-bot"},
            "project": self._project_doc(mr.project),
            "repository": {
                "name": mr.project.rsplit("/", 1)[-1],
                "homepage": self._web(mr.project),
            },
            "object_attributes": attributes,
        }
        return "Merge Request Hook", payload

    async def _deliver(self, hooks: list[Hook]) -> None:
        """POST each hook to the receiver, in order, awaiting its answer."""
        if self._webhook_url is None or self._client is None:
            return
        for event, payload in hooks:
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "GitLab/17.5.0",
                "X-Gitlab-Event": event,
                "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                "X-Gitlab-Instance": self.url,
            }
            if self._webhook_token is not None:
                headers["X-Gitlab-Token"] = self._webhook_token
            status: int | None
            try:
                async with self._client.post(
                    self._webhook_url, data=json.dumps(payload).encode(), headers=headers
                ) as resp:
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = None  # GitLab does not fail the API call when a hook is down
            self.deliveries.append(Delivery(event, payload, status))
