"""A fake GitHub REST API for pull requests, backed by real bare git repositories.

Answers like GitHub (API 2022-11-28) for what promotion by pull request uses: bearer/token
auth, 404 for unknown repositories, 422 "Validation Failed" with GitHub's ``errors`` shape, and
merges that really move the base branch of the bare repository. Every request is recorded,
failures can be injected, and ``pull_request`` webhooks are delivered (signed, awaited) to an
optional receiver so tests stay deterministic.

GitHub Apps (``add_app``): the App's JWT is verified against its public key the way GitHub
does (RS256 signature, ``iss`` the app id, not expired, ``exp`` at most 10 minutes ahead),
installation tokens are minted with a short, configurable life and refused with 401 once
expired; ``POST /repos/{o}/{r}/dispatches`` is answered 204 (422 for what GitHub refuses)
and recorded in ``dispatches``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pygit2
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDict

from tests.fakegithub_checks import FakeChecks

logger = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest"
Event = tuple[str, dict[str, Any]]  # (action, payload)
_BODY = web.RequestKey("json", dict[str, Any])  # the JSON object sent, {} for none


class FakeReply(Exception):
    """An answer the fake gives instead of success; the human helpers raise it too."""

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status, self.headers = status, headers
        self.doc: dict[str, Any] = {"message": message, **extra, "documentation_url": DOCS}
        self.doc["status"] = str(status)


def _invalid(*errors: dict[str, Any]) -> FakeReply:
    return FakeReply(
        422, "Validation Failed", errors=[{"resource": "PullRequest", **e} for e in errors]
    )


@dataclass(frozen=True)
class Recorded:
    """One request as received: ``json`` is the parsed body (None when there was none)."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    json: Any


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery: ``status`` is the receiver's answer, None if unreachable."""

    event: str
    action: str
    delivery_id: str
    headers: dict[str, str]
    body: bytes
    status: int | None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Pull:
    full_name: str
    number: int
    title: str
    body: str
    head: str
    base: str
    head_sha: str
    base_sha: str
    state: str = "open"
    merged: bool = False
    merge_commit_sha: str | None = None
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    closed_at: str | None = None
    merged_at: str | None = None


@dataclass
class _App:
    app_id: str
    public_key: rsa.RSAPublicKey
    installation_id: int
    repos: frozenset[str]
    token_ttl_s: float


@dataclass(frozen=True)
class Dispatch:
    """One accepted ``repository_dispatch``: the repository, its event type and payload."""

    full_name: str
    event_type: str
    client_payload: dict[str, Any]


# GitHub's limit on a JWT's life: exp at most 10 minutes after now.
_JWT_MAX_AHEAD_S = 600


def _tip(repo: pygit2.Repository, branch: str) -> pygit2.Oid | None:
    ref = repo.references.get(f"refs/heads/{branch}")
    target = ref.resolve().target if ref is not None else None
    return target if isinstance(target, pygit2.Oid) else None


class FakeGitHub:
    """``async with FakeGitHub({"o/r": bare}, token=T) as gh: GitHubForge(gh.url, ...)``.

    ``repos`` maps "owner/name" to a bare repository; branches are read from it on every
    request, so commits written to it directly show up like pushes. With ``webhook_url``,
    ``pull_request`` events go there, signed with ``webhook_secret`` when one is given.
    """

    def __init__(
        self,
        repos: dict[str, Path],
        *,
        token: str,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        login: str = "waveline-bot",
    ) -> None:
        self._repos = dict(repos)
        self._token = token
        self._webhook_url = webhook_url
        self._webhook_secret = webhook_secret
        self._login = login
        self._pulls: dict[tuple[str, int], _Pull] = {}
        self._ids = itertools.count(1_000_001)
        # [status, path part or None, times left, response headers]
        self._failures: list[tuple[int, str | None, int, dict[str, str]]] = []
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.url = ""
        self.requests: list[Recorded] = []
        self.deliveries: list[Delivery] = []
        # Commit statuses, check runs and suites, ETags and the rate limit (fakegithub_checks).
        self.checks = FakeChecks(self._repos)
        self._apps: dict[str, _App] = {}
        # installation token -> (installation id, wall-clock expiry)
        self._installation_tokens: dict[str, tuple[int, float]] = {}
        self.exchanges = 0  # installation tokens minted
        self.expired_refusals = 0  # requests refused for an expired installation token
        self.dispatches: list[Dispatch] = []

    def send_webhooks_to(self, url: str) -> None:
        """Where to deliver ``pull_request`` webhooks (known only once the receiver runs)."""
        self._webhook_url = url

    async def __aenter__(self) -> FakeGitHub:
        app = web.Application(middlewares=[self._middleware])
        pulls, one = "/repos/{owner}/{repo}/pulls", "/repos/{owner}/{repo}/pulls/{number:\\d+}"
        app.router.add_get(pulls, self._list)
        app.router.add_post(pulls, self._create)
        app.router.add_get(one, self._get)
        app.router.add_patch(one, self._patch)
        app.router.add_put(one + "/merge", self._merge_route)
        self.checks.add_routes(app)
        app.router.add_get("/repos/{owner}/{repo}/installation", self._installation)
        app.router.add_post("/app/installations/{id:\\d+}/access_tokens", self._access_token)
        app.router.add_post("/repos/{owner}/{repo}/dispatches", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test controls ---------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 502,
        *,
        times: int = 1,
        path_contains: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (and ``headers``)
        before any other check, e.g. 502 or a rate limit's 403 with ``Retry-After``."""
        self._failures.append((status, path_contains, times, headers or {}))

    def add_app(
        self,
        app_id: str,
        public_key: rsa.RSAPublicKey,
        *,
        installation_id: int = 4242,
        repos: tuple[str, ...] | None = None,
        token_ttl_s: float = 3600.0,
    ) -> None:
        """Register a GitHub App installed (as ``installation_id``) on ``repos`` (default:
        every repository of the fake); its installation tokens live ``token_ttl_s``."""
        self._apps[app_id] = _App(
            app_id,
            public_key,
            installation_id,
            frozenset(self._repos if repos is None else repos),
            token_ttl_s,
        )

    @property
    def minted(self) -> list[str]:
        """Every installation token issued so far (to look for in logs)."""
        return list(self._installation_tokens)

    def revoke_installation_tokens(self) -> None:
        """Make every installation token issued so far invalid, as a revocation would."""
        self._installation_tokens = {t: (i, 0.0) for t, (i, _) in self._installation_tokens.items()}

    def token_valid(self, token: str) -> bool:
        """True for a static token or an installation token not yet expired (thread-safe
        enough for the git server's thread: one dict read)."""
        if hmac.compare_digest(token.encode(), self._token.encode()):
            return True
        found = self._installation_tokens.get(token)
        return found is not None and time.time() < found[1]

    def numbers(self, full_name: str) -> list[int]:
        """Every pull request number of ``full_name``, open or not."""
        return sorted(n for name, n in self._pulls if name == full_name)

    def pull(self, full_name: str, number: int) -> dict[str, Any]:
        """The pull request as GET would answer it (without refreshing the head)."""
        return self._doc(self._find(full_name, number))

    async def merge(self, full_name: str, number: int, method: str = "merge") -> str:
        """Merge as a human pressing the button would; returns the new base tip."""
        pull = self._find(full_name, number)
        await self._deliver(self._sync(full_name))
        if pull.state != "open":
            raise FakeReply(405, "Pull Request is not mergeable")
        sha = self._do_merge(pull, method, None, None)
        await self._deliver([self._event("closed", pull)])
        return sha

    async def close(self, full_name: str, number: int) -> None:
        """Close without merging, as a human would."""
        pull = self._find(full_name, number)
        if pull.state == "open":
            pull.state, pull.closed_at = "closed", _now()
            await self._deliver([self._event("closed", pull)])

    # -- HTTP ------------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
            unparsable = False
        except ValueError:
            body, unparsable = None, True
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                CIMultiDict(request.headers),
                body,
            )
        )
        request[_BODY] = body if isinstance(body, dict) else {}
        try:
            self._check_failures(request.path)
            self._check_auth(request)
            if unparsable:
                raise FakeReply(400, "Problems parsing JSON")
            return await handler(request)
        except FakeReply as reply:
            return web.json_response(reply.doc, status=reply.status, headers=reply.headers)
        except web.HTTPException:
            # Unknown routes and methods: GitHub answers a JSON 404.
            return web.json_response(FakeReply(404, "Not Found").doc, status=404)

    def _check_failures(self, path: str) -> None:
        for i, (status, part, times, headers) in enumerate(self._failures):
            if part is None or part in path:
                self._failures[i] = (status, part, times - 1, headers)
                self._failures = [f for f in self._failures if f[2] > 0]
                message = "Server Error" if status >= 500 else "Injected failure"
                raise FakeReply(status, message, headers)

    def _check_auth(self, request: web.Request) -> None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if request.path.startswith("/app/") or request.path.endswith("/installation"):
            # Authenticated as the App itself: a JWT, never an installation token.
            if scheme.lower() != "bearer":
                raise FakeReply(401, "A JSON web token could not be decoded")
            self._check_jwt(value.strip())
        elif scheme.lower() not in ("bearer", "token") or not self.token_valid(value.strip()):
            if value.strip() in self._installation_tokens:
                self.expired_refusals += 1
            raise FakeReply(401, "Bad credentials")
        version = request.headers.get("X-GitHub-Api-Version")
        if version is not None and version != API_VERSION:
            raise FakeReply(400, f"API version '{version}' is not supported.")

    def _check_jwt(self, token: str) -> _App:
        """Verify the App JWT as GitHub does; 401 with GitHub's kind of message otherwise."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise FakeReply(401, "A JSON web token could not be decoded") from None
        app = self._apps.get(str(unverified.get("iss")))
        if app is None:
            raise FakeReply(401, "Integration not found")
        try:
            claims = jwt.decode(
                token,
                app.public_key,
                algorithms=["RS256"],
                issuer=app.app_id,
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise FakeReply(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the"
                " future time at which the assertion expires",
            ) from None
        except jwt.PyJWTError:
            raise FakeReply(401, "A JSON web token could not be decoded") from None
        now = time.time()
        if claims["exp"] > now + _JWT_MAX_AHEAD_S + 1:
            raise FakeReply(401, "'Expiration time' claim ('exp') is too far in the future")
        if claims["iat"] > now + 1:
            raise FakeReply(401, "'Issued at' claim ('iat') must be an Integer in the past")
        return app

    def _app_of(self, request: web.Request) -> _App:
        _, _, value = request.headers.get("Authorization", "").partition(" ")
        return self._check_jwt(value.strip())

    async def _installation(self, request: web.Request) -> web.Response:
        app = self._app_of(request)
        full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if full_name not in app.repos:
            raise FakeReply(404, "Not Found")
        owner = full_name.split("/", maxsplit=1)[0]
        return web.json_response(
            {
                "id": app.installation_id,
                "app_id": int(app.app_id) if app.app_id.isdigit() else 1,
                "account": {"login": owner},
                "repository_selection": "selected",
                "permissions": {"contents": "write", "pull_requests": "write"},
            }
        )

    async def _access_token(self, request: web.Request) -> web.Response:
        app = self._app_of(request)
        if int(request.match_info["id"]) != app.installation_id:
            raise FakeReply(404, "Not Found")
        token = "ghs_" + secrets.token_urlsafe(27)[:36]
        expires = time.time() + app.token_ttl_s
        self._installation_tokens[token] = (app.installation_id, expires)
        self.exchanges += 1
        stamp = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response(
            {
                "token": token,
                "expires_at": stamp,
                "permissions": {"contents": "write", "pull_requests": "write"},
                "repository_selection": "selected",
            },
            status=201,
        )

    async def _dispatch(self, request: web.Request) -> web.Response:
        full_name, _ = self._repo(request)
        doc = request[_BODY]
        event_type, payload = doc.get("event_type"), doc.get("client_payload", {})
        if not isinstance(event_type, str) or not event_type:
            raise FakeReply(422, 'Invalid request.\n\n"event_type" wasn\'t supplied.')
        if len(event_type) > 100:
            raise FakeReply(
                422, "Invalid request.\n\nevent_type is too long (maximum is 100 characters)."
            )
        if not isinstance(payload, dict):
            raise FakeReply(422, "Invalid request.\n\nclient_payload is not an object.")
        if len(payload) > 10:
            raise FakeReply(
                422,
                "Invalid request.\n\nNo more than 10 properties are allowed; "
                f"{len(payload)} were supplied.",
            )
        self.dispatches.append(Dispatch(full_name, event_type, payload))
        return web.Response(status=204)

    def _repo(self, request: web.Request) -> tuple[str, pygit2.Repository]:
        full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
        if full_name not in self._repos:
            raise FakeReply(404, "Not Found")
        return full_name, pygit2.Repository(str(self._repos[full_name]))

    async def _list(self, request: web.Request) -> web.Response:
        full_name, _ = self._repo(request)
        await self._deliver(self._sync(full_name))
        state, head, base = (request.query.get(k) for k in ("state", "head", "base"))
        owner = full_name.split("/")[0]
        found = [
            p
            for p in self._pulls.values()
            if p.full_name == full_name
            and (state == "all" or p.state == (state or "open"))
            and (base is None or p.base == base)
            # GitHub's head filter is "user:ref-name" (or just "user").
            and (head is None or head in (owner, f"{owner}:{p.head}"))
        ]
        docs = [self._doc(p, simple=True) for p in sorted(found, key=lambda p: -p.number)]
        return web.json_response(docs)

    async def _get(self, request: web.Request) -> web.Response:
        full_name, _ = self._repo(request)
        await self._deliver(self._sync(full_name))
        pull = self._find(full_name, int(request.match_info["number"]))
        return web.json_response(self._doc(pull))

    async def _create(self, request: web.Request) -> web.Response:
        full_name, repo = self._repo(request)
        await self._deliver(self._sync(full_name))
        doc = request[_BODY]
        missing = [
            f for f in ("title", "head", "base") if not doc.get(f) or not isinstance(doc[f], str)
        ]
        if missing:
            raise _invalid(*({"field": f, "code": "missing_field"} for f in missing))
        owner = full_name.split("/")[0]
        who, _, head = doc["head"].rpartition(":")
        base = doc["base"]
        head_tip, base_tip = _tip(repo, head), _tip(repo, base)
        bad = [f for f, tip in (("base", base_tip), ("head", head_tip)) if tip is None]
        if who not in ("", owner):
            bad.append("head")  # forks are not modelled
        if bad or head_tip is None or base_tip is None:
            raise _invalid(*({"field": f, "code": "invalid"} for f in sorted(set(bad))))
        if self._open_for(full_name, head, base) is not None:
            message = f"A pull request already exists for {owner}:{head}."
            raise _invalid({"code": "custom", "message": message})
        if head_tip == base_tip or repo.descendant_of(base_tip, head_tip):
            raise _invalid({"code": "custom", "message": f"No commits between {base} and {head}"})
        number = 1 + max((n for (name, n) in self._pulls if name == full_name), default=0)
        pull = _Pull(
            full_name,
            number,
            doc["title"],
            str(doc.get("body") or ""),
            head,
            base,
            str(head_tip),
            str(base_tip),
        )
        self._pulls[(full_name, number)] = pull
        await self._deliver([self._event("opened", pull)])
        location = f"{self.url}/repos/{full_name}/pulls/{number}"
        return web.json_response(self._doc(pull), status=201, headers={"Location": location})

    async def _patch(self, request: web.Request) -> web.Response:
        full_name, repo = self._repo(request)
        await self._deliver(self._sync(full_name))
        pull = self._find(full_name, int(request.match_info["number"]))
        doc = request[_BODY]
        state = doc.get("state", pull.state)
        if state not in ("open", "closed"):
            raise _invalid({"field": "state", "code": "invalid"})
        if "base" in doc and _tip(repo, str(doc["base"])) is None:
            raise _invalid({"field": "base", "code": "invalid"})
        if state != pull.state and pull.merged:
            raise _invalid(
                {"code": "custom", "message": "Cannot change the state of a merged pull request"}
            )
        if state == "open" != pull.state and self._open_for(full_name, pull.head, pull.base):
            message = f"A pull request already exists for {full_name.split('/')[0]}:{pull.head}."
            raise _invalid({"code": "custom", "message": message})
        edits = {
            k: str(doc[k])
            for k in ("title", "body", "base")
            if k in doc and doc[k] != getattr(pull, k)
        }
        for key, value in edits.items():
            setattr(pull, key, value)
        pull.updated_at = _now()
        events: list[Event] = []
        if edits:
            events.append(self._event("edited", pull))
        if state != pull.state:
            pull.state, pull.closed_at = state, (_now() if state == "closed" else None)
            events.append(self._event("closed" if state == "closed" else "reopened", pull))
        await self._deliver(events)
        return web.json_response(self._doc(pull))

    async def _merge_route(self, request: web.Request) -> web.Response:
        full_name, repo = self._repo(request)
        await self._deliver(self._sync(full_name))
        pull = self._find(full_name, int(request.match_info["number"]))
        doc = request[_BODY]
        method = doc.get("merge_method", "merge")
        if method not in ("merge", "squash", "rebase"):
            raise _invalid({"field": "merge_method", "code": "invalid"})
        if pull.state != "open":
            raise FakeReply(405, "Pull Request is not mergeable")
        if doc.get("sha") is not None and doc["sha"] != str(_tip(repo, pull.head)):
            raise FakeReply(409, "Head branch was modified. Review and try the merge again.")
        sha = self._do_merge(pull, method, doc.get("commit_title"), doc.get("commit_message"))
        await self._deliver([self._event("closed", pull)])
        return web.json_response(
            {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}
        )

    # -- state and git ---------------------------------------------------------------------

    def _find(self, full_name: str, number: int) -> _Pull:
        pull = self._pulls.get((full_name, number))
        if pull is None:
            raise FakeReply(404, "Not Found")
        return pull

    def _open_for(self, full_name: str, head: str, base: str) -> _Pull | None:
        return next(
            (
                p
                for p in self._pulls.values()
                if (p.full_name, p.head, p.base, p.state) == (full_name, head, base, "open")
            ),
            None,
        )

    def _sync(self, full_name: str) -> list[Event]:
        """Follow branch tips like GitHub does on push: a moved head is a "synchronize"."""
        repo = pygit2.Repository(str(self._repos[full_name]))
        events: list[Event] = []
        for pull in self._pulls.values():
            if pull.full_name != full_name or pull.state != "open":
                continue
            head, base = _tip(repo, pull.head), _tip(repo, pull.base)
            pull.base_sha = str(base) if base is not None else pull.base_sha
            if head is not None and str(head) != pull.head_sha:
                pull.head_sha, pull.updated_at = str(head), _now()
                events.append(self._event("synchronize", pull))
        return events

    def _do_merge(self, pull: _Pull, method: str, title: str | None, message: str | None) -> str:
        """Write the merge into the bare repository and move the base branch; 405 on conflict."""
        repo = pygit2.Repository(str(self._repos[pull.full_name]))
        head_tip, base_tip = _tip(repo, pull.head), _tip(repo, pull.base)
        if head_tip is None or base_tip is None:
            raise FakeReply(405, "Pull Request is not mergeable")
        bot = pygit2.Signature("GitHub", "noreply@github.com")
        if method == "rebase":
            walker = repo.walk(
                head_tip, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.REVERSE
            )
            walker.hide(base_tip)
            new = base_tip
            for commit in walker:
                if len(commit.parents) != 1:
                    raise FakeReply(405, "Pull Request is not mergeable")
                tree = self._merged_tree(
                    repo, commit.parents[0].tree, repo[new].peel(pygit2.Tree), commit.tree
                )
                new = repo.create_commit(None, commit.author, bot, commit.message, tree, [new])
        else:
            if repo.descendant_of(head_tip, base_tip):
                tree = repo[head_tip].peel(pygit2.Tree).id
            else:
                ancestor = repo[repo.merge_base(head_tip, base_tip)].peel(pygit2.Tree)
                tree = self._merged_tree(
                    repo,
                    ancestor,
                    repo[base_tip].peel(pygit2.Tree),
                    repo[head_tip].peel(pygit2.Tree),
                )
            owner = pull.full_name.split("/")[0]
            if method == "merge":
                subject = title or f"Merge pull request #{pull.number} from {owner}/{pull.head}"
                text, parents = (
                    f"{subject}\n\n{pull.title if message is None else message}",
                    [base_tip, head_tip],
                )
            else:
                subject = title or f"{pull.title} (#{pull.number})"
                text, parents = subject + (f"\n\n{message}" if message else ""), [base_tip]
            new = repo.create_commit(None, bot, bot, text, tree, parents)
        repo.references[f"refs/heads/{pull.base}"].set_target(new)
        pull.state, pull.merged, pull.merge_commit_sha = "closed", True, str(new)
        pull.head_sha, pull.base_sha = str(head_tip), str(new)
        pull.closed_at = pull.merged_at = pull.updated_at = _now()
        logger.info("fake github merged %s#%d (%s) as %s", pull.full_name, pull.number, method, new)
        return str(new)

    @staticmethod
    def _merged_tree(
        repo: pygit2.Repository, ancestor: pygit2.Tree, ours: pygit2.Tree, theirs: pygit2.Tree
    ) -> pygit2.Oid:
        index = repo.merge_trees(ancestor, ours, theirs)
        if index.conflicts is not None:
            raise FakeReply(405, "Pull Request is not mergeable")
        return index.write_tree(repo)

    # -- documents and webhooks ------------------------------------------------------------

    def _doc(self, pull: _Pull, *, simple: bool = False) -> dict[str, Any]:
        owner, name = pull.full_name.split("/")
        repo = {"name": name, "full_name": pull.full_name, "owner": {"login": owner}}
        doc: dict[str, Any] = {
            "url": f"{self.url}/repos/{pull.full_name}/pulls/{pull.number}",
            "id": next(self._ids),
            "number": pull.number,
            "html_url": f"{self.url}/{pull.full_name}/pull/{pull.number}",
            "state": pull.state,
            "title": pull.title,
            "body": pull.body,
            "user": {"login": self._login},
            "draft": False,
            "created_at": pull.created_at,
            "updated_at": pull.updated_at,
            "closed_at": pull.closed_at,
            "merged_at": pull.merged_at,
            "merge_commit_sha": pull.merge_commit_sha,
            "head": {
                "label": f"{owner}:{pull.head}",
                "ref": pull.head,
                "sha": pull.head_sha,
                "repo": repo,
            },
            "base": {
                "label": f"{owner}:{pull.base}",
                "ref": pull.base,
                "sha": pull.base_sha,
                "repo": repo,
            },
        }
        if not simple:  # the list answers GitHub's "pull-request-simple", without these
            doc.update(merged=pull.merged, mergeable=None, merged_by=None, commits=None)
        return doc

    def _event(self, action: str, pull: _Pull) -> Event:
        owner, name = pull.full_name.split("/")
        return action, {
            "action": action,
            "number": pull.number,
            "pull_request": self._doc(pull),
            "repository": {"name": name, "full_name": pull.full_name, "owner": {"login": owner}},
            "sender": {"login": self._login},
        }

    async def _deliver(self, events: list[Event]) -> None:
        """POST each event to the receiver, in order, awaiting its answer."""
        if self._webhook_url is None or self._client is None:
            return
        for action, payload in events:
            body = json.dumps(payload).encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/fake",
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": str(uuid.uuid4()),
            }
            if self._webhook_secret is not None:
                digest = hmac.new(self._webhook_secret.encode(), body, hashlib.sha256).hexdigest()
                headers["X-Hub-Signature-256"] = f"sha256={digest}"
            status: int | None
            try:
                async with self._client.post(self._webhook_url, data=body, headers=headers) as resp:
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = None  # GitHub does not fail the API call when a hook is down
            self.deliveries.append(
                Delivery(
                    "pull_request", action, headers["X-GitHub-Delivery"], headers, body, status
                )
            )
