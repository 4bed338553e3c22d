"""``POST /v1/webhooks/github`` and ``POST /v1/webhooks/argocd``.

GitHub deliveries are authenticated by ``X-Hub-Signature-256`` over the raw body, compared in
constant time. A delivery whose ``X-GitHub-Delivery`` was handled before is answered 200 and
changes nothing (``deliveries.py``). Each accepted report gets an id derived from what it
means (repo, sha, context, state, reporter; or app, revision, phase, health, sync), so the
same fact sent twice is recognisably one event downstream. A check carries who reported it
(the App of a check run or suite; the creator of a commit status), which the status-tracker
matches against the required check (docs/security.md).
``pull_request`` deliveries go to ``waveline.pulls``, where the notifier follows the
promotion pull requests it opened. A GitHub delivery that changes nothing is answered with
why (``ignore_rules.py``, ``ignored.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

from aiohttp import web

from waveline.services.ingest import deliveries, ignore_rules, ignored, ignored_store
from waveline.services.ingest.auth import caller
from waveline.services.ingest.body import parse_json, read_body, read_model, validate
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.deliveries import delivery_id
from waveline.services.ingest.ignore_rules import Ignored
from waveline.services.ingest.payloads import (
    ArgoReport,
    CheckRunDelivery,
    CheckSuiteDelivery,
    GitHubDelivery,
    GitHubUser,
    PullRequestDelivery,
    StatusDelivery,
)
from waveline.services.ingest.responses import ApiError
from waveline.shared.models.base import utcnow
from waveline.shared.models.checks import CheckReported, CheckState
from waveline.shared.models.deploys import DeployReported
from waveline.shared.models.pulls import PullRequestReported

_NS = uuid.UUID("8f6d2c1e-52a4-4d7b-9b3e-1d0c8e7a6f55")
_SUCCESS = {"success", "neutral", "skipped"}


def _ignored() -> web.Response:
    """204: understood and deliberately not acted on (a fresh response each time)."""
    return web.Response(status=204)


def verify_signature(secret: bytes, body: bytes, header: str | None) -> None:
    if not header:
        raise ApiError(401, "unauthorized", "missing X-Hub-Signature-256")
    scheme, _, received = header.partition("=")
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if scheme != "sha256" or not hmac.compare_digest(received.encode(), expected.encode()):
        raise ApiError(403, "forbidden", "X-Hub-Signature-256 does not match the body")


def _conclusion_state(status: str | None, conclusion: str | None) -> CheckState:
    if status != "completed" or conclusion is None:
        return "pending"
    return "success" if conclusion in _SUCCESS else "failure"


@dataclass(frozen=True)
class _Fact:
    sha: str
    context: str
    state: CheckState
    branches: tuple[str, ...]
    app: str | None  # the GitHub App that reported it (slug)
    user: str | None  # the login that created a commit status


def _status_reporter(sender: GitHubUser | None) -> tuple[str | None, str | None]:
    """(app, user) of a commit status: its creator, an App when it is the App's bot."""
    if sender is None:
        return None, None
    login = sender.login
    if sender.type == "Bot" and login.endswith("[bot]"):
        return login.removesuffix("[bot]"), login
    return None, login


def _fact(event: str, doc: dict[str, object]) -> _Fact:
    """What a status, check_run or check_suite delivery reports, and who reported it."""
    if event == "status":
        status = validate(StatusDelivery, doc)
        branches = tuple(b.name for b in status.branches)
        by_app, by_user = _status_reporter(status.sender)
        return _Fact(status.sha, status.context, status.state, branches, by_app, by_user)
    if event == "check_run":
        run = validate(CheckRunDelivery, doc).check_run
        branch = run.head_branch or (run.check_suite.head_branch if run.check_suite else None)
        state = _conclusion_state(run.status, run.conclusion)
        slug = run.app.slug if run.app else None
        return _Fact(run.head_sha, run.name, state, (branch,) if branch else (), slug, None)
    suite = validate(CheckSuiteDelivery, doc).check_suite
    app = suite.app
    context = f"check_suite:{(app and (app.slug or app.name)) or 'unknown'}"
    state = _conclusion_state(suite.status, suite.conclusion)
    branch = suite.head_branch
    slug = app.slug if app else None
    return _Fact(suite.head_sha, context, state, (branch,) if branch else (), slug, None)


def _duplicate(delivery: str) -> web.Response:
    """200: this delivery was handled before; nothing is done again."""
    return web.json_response({"duplicate": True, "delivery": delivery}, status=200)


async def github(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    body = await read_body(request)
    secret = ctx.runtime.secrets.github_webhook_secret
    if secret is None:
        raise ApiError(403, "forbidden", "no GitHub webhook secret is configured on this server")
    verify_signature(
        secret.get_secret_value().encode(), body, request.headers.get("X-Hub-Signature-256")
    )
    event = request.headers.get("X-GitHub-Event", "")
    if not event:
        raise ApiError(400, "malformed", "missing X-GitHub-Event")
    delivery = delivery_id(request.headers.get("X-GitHub-Delivery"))
    # Judged in full first: a body that is not valid is refused, seen before or not.
    message = _github_message(ctx, event, body)
    if delivery is not None and await deliveries.seen(ctx.runtime.pool, delivery):
        return _duplicate(delivery)
    note: Ignored | None = None  # published all the same: a check on an unknown commit
    if isinstance(message, CheckReported):
        # After the duplicate check: only a delivery handled now reads where its commit is.
        state = await ignored_store.commit_state(ctx.runtime.pool, message.repo, message.sha)
        note = ignore_rules.commit_fate(message.repo, message.sha, message.context, state)
        if note is not None and not note.published:
            message, note = note, None
    if isinstance(message, Ignored):
        response = await ignored.answer(ctx, message, event, route="github")
    else:
        topic = (
            ctx.runtime.topics.pulls
            if isinstance(message, PullRequestReported)
            else ctx.runtime.topics.checks
        )
        await ctx.publish(message, topic, key=message.repo, route="github")
        answer: dict[str, object] = {"event_id": str(message.event_id)}
        if note is not None:
            answer |= await ignored.tell(ctx, note, event, route="github")
        response = web.json_response(answer, status=202)
    if delivery is not None:
        await deliveries.remember(ctx.runtime.pool, delivery)
    return response


def _github_message(
    ctx: IngestContext, event: str, body: bytes
) -> CheckReported | PullRequestReported | Ignored:
    """What a delivery reports, to publish, or why Waveline ignores it."""
    doc = parse_json(body)  # GitHub only ever sends a JSON object
    config = ctx.runtime.config
    if event not in ignore_rules.READ_EVENTS:
        # ping and every kind we do not act on; their repository is read loosely.
        named = doc.get("repository")
        full_name = named.get("full_name") if isinstance(named, dict) else None
        return ignore_rules.unread_event(
            config, event, full_name if isinstance(full_name, str) else None
        )
    full_name = validate(GitHubDelivery, doc).repository.full_name
    repo = config.repo_by_full_name(full_name)
    if repo is None:
        return ignore_rules.unknown_repository(config, full_name, event)
    if event == "pull_request":
        return _pull_request(repo, validate(PullRequestDelivery, doc))
    fact = _fact(event, doc)
    meaning = f"check/{repo}/{fact.sha}/{fact.context}/{fact.state}"
    if fact.app is not None or fact.user is not None:
        # Who reported it is part of the fact: the same result from another reporter is
        # another event (and may not count).
        meaning += f"/{fact.app or ''}/{fact.user or ''}"
    check = validate(
        CheckReported,
        {
            "event_id": uuid.uuid5(_NS, meaning),
            "repo": repo,
            "sha": fact.sha,
            "context": fact.context,
            "state": fact.state,
            "kind": event,
            "branches": fact.branches,
            "reported_at": utcnow(),
            "app": fact.app,
            "user": fact.user,
        },
    )
    # Validated first: a check that is not valid is refused, required or not.
    return ignore_rules.context_fate(config, repo, check.context) or check


# Actions that change what a promotion pull request means to Waveline.
_PR_ACTIONS = {"opened", "reopened", "synchronize", "closed", "edited"}


def _pull_request(repo: str, delivery: PullRequestDelivery) -> PullRequestReported | Ignored:
    action, pr = delivery.action, delivery.pull_request
    if action not in _PR_ACTIONS:
        return ignore_rules.unread_action(repo, action)  # labels, reviews, assignments...
    if pr is None:
        raise ApiError(422, "invalid_field", [{"field": "pull_request", "reason": "missing"}])
    number = pr.number if pr.number is not None else delivery.number
    merged = bool(pr.merged)
    meaning = f"pr/{repo}/{number}/{action}/{pr.head.sha}/{merged}"
    return validate(
        PullRequestReported,
        {
            "event_id": uuid.uuid5(_NS, meaning),
            "repo": repo,
            "number": number,
            "action": action,
            "state": pr.state,
            "merged": merged,
            "head_ref": pr.head.ref,
            "head_sha": pr.head.sha,
            "base_ref": pr.base.ref,
            "merge_sha": pr.merge_commit_sha if merged else None,
            "url": pr.html_url,
            "reported_at": utcnow(),
        },
    )


async def argocd(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    argo = caller(request, "argocd", what="Argo CD token")
    report = await read_model(request, ArgoReport)
    waves = ctx.runtime.config.pipelines_of_target(report.app)
    if not waves:
        return _ignored()  # an Application that is no wave's target
    # The report counts for every pipeline naming the target: all must be in the scope.
    argo.on(*{pipeline for pipeline, _ in waves})
    if report.revision == "":
        # Multi-source Applications report no single revision: nothing to judge.
        return _ignored()
    fields = report.model_dump()
    meaning = "/".join(fields[k] for k in ("app", "revision", "phase", "health", "sync"))
    deploy = validate(
        DeployReported,
        {**fields, "event_id": uuid.uuid5(_NS, f"deploy/{meaning}"), "reported_at": utcnow()},
    )
    await ctx.publish(deploy, ctx.runtime.topics.deploys, key=deploy.app, route="argocd")
    return web.json_response({"event_id": str(deploy.event_id)}, status=202)
