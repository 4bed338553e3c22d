"""The aiohttp application: routes, error middleware, lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from waveline.services.ingest import (
    dashboard,
    flux,
    freeze_http,
    gitlab,
    health,
    images,
    operator,
    results,
    webhooks,
)
from waveline.services.ingest.body import encodings
from waveline.services.ingest.context import CONTEXT_KEY, IngestContext
from waveline.services.ingest.frontdoor import FrontDoor
from waveline.services.ingest.metrics import IngestMetrics
from waveline.services.ingest.quarantine_http import post_unquarantine
from waveline.services.ingest.responses import ApiError, error_response
from waveline.services.ingest.retry import post_retry
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = IngestContext.of(request)
    route = (
        request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
    )
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.status_code, exc.error, exc.detail)
    except web.HTTPRequestEntityTooLarge:
        response = error_response(413, "too_large", "body too large")
    except web.HTTPException as exc:
        response = error_response(exc.status_code, exc.reason.lower().replace(" ", "_"), None)
        if "Allow" in exc.headers:  # a 405 names the methods the resource takes (RFC 9110)
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        logger.exception("ingest: unhandled error on %s %s", request.method, request.path)
        response = error_response(500, "internal", "see the ingest log")
    ctx.metrics.requests.labels(route, str(response.status)).inc()
    return response


def create_app(
    runtime: Runtime,
    *,
    metrics: IngestMetrics | None = None,
    front_door: FrontDoor | None = None,
) -> web.Application:
    """The app; ``front_door`` (``server.py``'s) is told when each request's head arrived."""
    middlewares = [errors, encodings]
    if front_door is not None:
        middlewares.insert(0, front_door.middleware)
    app = web.Application(middlewares=middlewares, client_max_size=runtime.settings.http_max_body)
    app[CONTEXT_KEY] = IngestContext(runtime=runtime, metrics=metrics or IngestMetrics())
    app.router.add_post("/v1/images", images.post_images)
    app.router.add_post("/v1/pipelines/{pipeline}/images", images.post_pipeline_images)
    app.router.add_post("/v1/webhooks/github", webhooks.github)
    app.router.add_post("/v1/webhooks/gitlab", gitlab.gitlab)
    app.router.add_post("/v1/webhooks/argocd", webhooks.argocd)
    app.router.add_post("/v1/webhooks/flux", flux.flux)
    app.router.add_post(
        "/v1/pipelines/{pipeline}/waves/{wave}/{action:approve|hold|release}",
        operator.wave_action,
    )
    app.router.add_post("/v1/pipelines/{pipeline}/waves/{wave}/rollback", operator.rollback)
    app.router.add_post("/v1/pipelines/{pipeline}/sets/{app_sha}/retry", post_retry)
    app.router.add_post("/v1/pipelines/{pipeline}/sets/{app_sha}/unquarantine", post_unquarantine)
    app.router.add_post(
        "/v1/pipelines/{pipeline}/waves/{wave}/promotions/{promotion}/result",
        results.promotion_result,
    )
    app.router.add_get("/v1/pipelines/{pipeline}", operator.pipeline_state)
    freeze_http.add_routes(app)
    app.router.add_get("/", dashboard.index)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    app.router.add_get("/openapi.json", health.openapi)
    return app
