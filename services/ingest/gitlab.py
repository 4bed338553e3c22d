"""``POST /v1/webhooks/gitlab``: GitLab's merge request, pipeline and job webhooks.

GitLab sends the webhook's secret token as ``X-Gitlab-Token``; it is compared in constant
time with ``WAVELINE_GITLAB_WEBHOOK_SECRET`` (``auth.gitlab_webhook_secret_env``) before the
body is read: missing or wrong is 401 and nothing is published. What a delivery means is
decided in ``gitlab_facts.py``; merge requests go to ``waveline.pulls``, checks to
``waveline.checks``, each keyed by the config repo. A redelivery publishes the same event
ids again (they come from the meaning), which downstream recognises as one fact.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from waveline.services.ingest import gitlab_facts
from waveline.services.ingest.body import parse_json, read_body
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.responses import ApiError
from waveline.shared.models.base import utcnow
from waveline.shared.models.pulls import PullRequestReported

TOKEN_HEADER = "X-Gitlab-Token"  # noqa: S105 (a header name)
EVENT_HEADER = "X-Gitlab-Event"


def verify_token(secret: bytes, header: str | None) -> None:
    """401 unless ``header`` is the secret (compared in constant time)."""
    if not header:
        raise ApiError(401, "unauthorized", f"missing {TOKEN_HEADER}")
    if not hmac.compare_digest(header.encode(), secret):
        raise ApiError(401, "unauthorized", f"{TOKEN_HEADER} does not match")


async def gitlab(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    secret = ctx.runtime.secrets.gitlab_webhook_secret
    if secret is None:
        raise ApiError(403, "forbidden", "no GitLab webhook secret is configured on this server")
    verify_token(secret.get_secret_value().encode(), request.headers.get(TOKEN_HEADER))
    event = request.headers.get(EVENT_HEADER, "")
    if not event:
        raise ApiError(400, "malformed", f"missing {EVENT_HEADER}")
    doc = parse_json(await read_body(request))  # GitLab only ever sends a JSON object
    found = gitlab_facts.messages(ctx.runtime.config, event, doc, utcnow())
    if not found:
        return web.Response(status=204)  # understood and deliberately not acted on
    for message in found:
        topic = (
            ctx.runtime.topics.pulls
            if isinstance(message, PullRequestReported)
            else ctx.runtime.topics.checks
        )
        await ctx.publish(message, topic, key=message.repo, route="gitlab")
    return web.json_response({"event_ids": [str(m.event_id) for m in found]}, status=202)
