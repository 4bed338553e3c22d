"""``POST /v1/webhooks/github`` and ``POST /v1/webhooks/argocd``.

GitHub deliveries are authenticated by ``X-Hub-Signature-256`` over the raw body, compared in
constant time. Each accepted report gets an id derived from what it means (repo, sha,
context, state; or app, revision, phase, health, sync), so a redelivery — which reuses
``X-GitHub-Delivery`` — or the same fact sent twice is recognisably one event downstream.
``pull_request`` deliveries go to ``waveline.pulls``, where the notifier follows the
promotion pull requests it opened.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from waveline.services.ingest.auth import require_bearer
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.responses import ApiError, validation_detail
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


def _fact(event: str, doc: dict[str, Any]) -> tuple[str, str, CheckState, tuple[str, ...]]:
    """(sha, context, state, branches) of a status, check_run or check_suite delivery."""
    if event == "status":
        state = doc.get("state")
        if state not in {"pending", "success", "failure", "error"}:
            raise ApiError(422, "invalid_field", [{"field": "state", "reason": "unknown state"}])
        branches = tuple(
            str(b.get("name")) for b in doc.get("branches") or [] if isinstance(b, dict)
        )
        return str(doc.get("sha")), str(doc.get("context")), state, branches
    key = "check_run" if event == "check_run" else "check_suite"
    run = doc.get(key)
    if not isinstance(run, dict):
        raise ApiError(422, "invalid_field", [{"field": key, "reason": "missing"}])
    if event == "check_run":
        context = str(run.get("name"))
    else:
        app: dict[str, Any] = run["app"] if isinstance(run.get("app"), dict) else {}
        context = f"check_suite:{app.get('slug') or app.get('name') or 'unknown'}"
    state = _conclusion_state(run.get("status"), run.get("conclusion"))
    branch = run.get("head_branch") or (run.get("check_suite") or {}).get("head_branch")
    return str(run.get("head_sha")), context, state, (str(branch),) if branch else ()


async def github(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    body = await ctx.read_body(request)
    secret = ctx.runtime.secrets.github_webhook_secret
    if secret is None:
        raise ApiError(403, "forbidden", "no GitHub webhook secret is configured on this server")
    verify_signature(
        secret.get_secret_value().encode(), body, request.headers.get("X-Hub-Signature-256")
    )
    event = request.headers.get("X-GitHub-Event", "")
    if event not in {"status", "check_run", "check_suite", "pull_request"}:
        return _ignored()  # ping and every kind we do not act on
    doc = ctx.parse_json_object(body)
    full_name = (doc.get("repository") or {}).get("full_name")
    if not isinstance(full_name, str):
        raise ApiError(
            422, "invalid_field", [{"field": "repository.full_name", "reason": "missing"}]
        )
    repo = ctx.runtime.config.repo_by_full_name(full_name)
    if repo is None:
        return _ignored()  # not a repository Waveline writes to
    if event == "pull_request":
        return await _pull_request(ctx, repo, doc)
    sha, context, state, branches = _fact(event, doc)
    try:
        check = CheckReported(
            event_id=uuid.uuid5(_NS, f"check/{repo}/{sha}/{context}/{state}"),
            repo=repo,
            sha=sha,
            context=context,
            state=state,
            kind=event,
            branches=branches,
            reported_at=utcnow(),
        )
    except ValidationError as exc:
        raise ApiError(422, "invalid_field", validation_detail(exc)) from exc
    await ctx.publish(check, ctx.runtime.topics.checks, key=repo, route="github")
    return web.json_response({"event_id": str(check.event_id)}, status=202)


# Actions that change what a promotion pull request means to Waveline.
_PR_ACTIONS = {"opened", "reopened", "synchronize", "closed", "edited"}


async def _pull_request(ctx: IngestContext, repo: str, doc: dict[str, Any]) -> web.Response:
    action = doc.get("action")
    pr = doc.get("pull_request")
    if action not in _PR_ACTIONS:
        return _ignored()  # labels, reviews, assignments...
    if not isinstance(pr, dict):
        raise ApiError(422, "invalid_field", [{"field": "pull_request", "reason": "missing"}])
    head: dict[str, Any] = pr["head"] if isinstance(pr.get("head"), dict) else {}
    base: dict[str, Any] = pr["base"] if isinstance(pr.get("base"), dict) else {}
    number, head_sha = pr.get("number", doc.get("number")), head.get("sha")
    merged = bool(pr.get("merged"))
    meaning = f"pr/{repo}/{number}/{action}/{head_sha}/{merged}"
    try:
        report = PullRequestReported(
            event_id=uuid.uuid5(_NS, meaning),
            repo=repo,
            number=number,
            action=action,
            state=str(pr.get("state") or ""),
            merged=merged,
            head_ref=str(head.get("ref") or ""),
            head_sha=head_sha,
            base_ref=str(base.get("ref") or ""),
            merge_sha=pr.get("merge_commit_sha") if merged else None,
            url=pr.get("html_url"),
            reported_at=utcnow(),
        )
    except ValidationError as exc:
        raise ApiError(422, "invalid_field", validation_detail(exc)) from exc
    await ctx.publish(report, ctx.runtime.topics.pulls, key=repo, route="github")
    return web.json_response({"event_id": str(report.event_id)}, status=202)


async def argocd(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    require_bearer(request, ctx.runtime.secrets.argocd_token, "Argo CD token")
    doc = await ctx.read_json_object(request)
    app = doc.get("app")
    if isinstance(app, str) and not ctx.runtime.config.pipelines_of_target(app):
        return _ignored()  # an Application that is no wave's target
    if doc.get("revision") == "":
        # Multi-source Applications report no single revision: nothing to judge.
        return _ignored()
    fields = {k: doc.get(k, "") for k in ("app", "revision", "phase", "health", "sync")}
    meaning = "/".join(str(fields[k]) for k in ("app", "revision", "phase", "health", "sync"))
    try:
        deploy = DeployReported.model_validate(
            {**fields, "event_id": uuid.uuid5(_NS, f"deploy/{meaning}"), "reported_at": utcnow()}
        )
    except ValidationError as exc:
        raise ApiError(422, "invalid_field", validation_detail(exc)) from exc
    await ctx.publish(deploy, ctx.runtime.topics.deploys, key=deploy.app, route="argocd")
    return web.json_response({"event_id": str(deploy.event_id)}, status=202)
