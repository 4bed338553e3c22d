"""``POST /v1/webhooks/flux``: events of Flux's notification-controller (docs/flux.md).

A ``generic-hmac`` Provider signs the body (``X-Signature: <hash>=<hex HMAC>``, keyed by its
secret's ``token``: ``WAVELINE_FLUX_WEBHOOK_SECRET``); a ``generic`` one sends the headers of
its secret, here ``Authorization: Bearer`` ``WAVELINE_FLUX_TOKEN``. Every credential sent
must hold, and at least one must be sent: no credential or a signature that does not match
is 401, a wrong bearer token 403, before the body is parsed; nothing is published then.

An event about a Kustomization or HelmRelease that a wave lists as
``<Kind>/<namespace>/<name>``, naming a config-repo commit and with a reason that says how
that commit deployed (shared/flux.py), is published on ``waveline.deploys`` as an Argo CD
notification would be, with the id the same report gets from the reconciler. Any other
event is answered 204 and changes nothing; one about a Flux object no wave lists, or naming
no commit, is logged once per object and cause (a target named wrong shows at once).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import OrderedDict
from typing import Any, Literal

from aiohttp import web
from pydantic import Field
from pydantic.json_schema import models_json_schema

from waveline.services.ingest.auth import require_bearer
from waveline.services.ingest.body import parse_json, read_body, validate
from waveline.services.ingest.context import IngestContext
from waveline.services.ingest.payloads import Body
from waveline.services.ingest.responses import ApiError
from waveline.shared.deploy_sources import deploy_report
from waveline.shared.flux import FluxRef, event_commit, event_state, ref_of
from waveline.shared.flux_config import FluxSettings

logger = logging.getLogger(__name__)

# The hashes the generic-hmac Provider may name (Flux signs with sha256 today).
_HASHES = {"sha224": "sha224", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}


class FluxObject(Body):
    """``involvedObject``: the object the event is about (a Kubernetes ObjectReference)."""

    kind: str = Field(max_length=63)
    namespace: str = Field(default="", max_length=253)
    name: str = Field(max_length=253)
    api_version: str = Field(default="", alias="apiVersion", max_length=253)


class FluxEvent(Body):
    """The parts of Flux's Event (fluxcd/pkg apis/event/v1beta1) ingest reads; the others
    (timestamp, message, reportingController, ...) are ignored."""

    involved_object: FluxObject = Field(alias="involvedObject")
    severity: Literal["trace", "info", "error"]
    reason: str = Field(max_length=1024)
    metadata: dict[str, str] = {}


def verify_signature(key: bytes, body: bytes, header: str) -> None:
    """401 unless ``header`` is ``<hash>=<hex HMAC of body under key>``."""
    name, _, received = header.strip().partition("=")
    algorithm = _HASHES.get(name.lower())
    if algorithm is None:
        raise ApiError(401, "unauthorized", "X-Signature: expected sha256=<hex HMAC of the body>")
    expected = hmac.new(key, body, getattr(hashlib, algorithm)).hexdigest()
    if not hmac.compare_digest(received.lower().encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "X-Signature does not match the body")


def authenticate(request: web.Request, settings: FluxSettings, body: bytes) -> None:
    """Refuse the request unless a credential is sent and every one sent holds."""
    signature = request.headers.get("X-Signature")
    bearer = "Authorization" in request.headers
    if signature is None and not bearer:
        raise ApiError(
            401,
            "unauthorized",
            "send X-Signature (a generic-hmac Provider) or 'Authorization: Bearer <Flux token>'",
        )
    if signature is not None:
        key = settings.flux_webhook_secret
        if key is None:
            raise ApiError(401, "unauthorized", "no Flux webhook secret is configured here")
        verify_signature(key.get_secret_value().encode(), body, signature)
    if bearer:
        require_bearer(request, settings.flux_token, "Flux token")


async def flux(request: web.Request) -> web.Response:
    ctx = IngestContext.of(request)
    body = await read_body(request)
    authenticate(request, ctx.runtime.settings.flux, body)
    event = validate(FluxEvent, parse_json(body))
    obj = event.involved_object
    ref = ref_of(obj.api_version, obj.kind, obj.namespace, obj.name)
    if ref is None:
        return web.Response(status=204)  # not a kind Waveline follows
    if not ctx.runtime.config.pipelines_of_target(ref.target):
        _ignored(ref, "no wave lists it as a target")
        return web.Response(status=204)
    sha = event_commit(event.metadata, ref.group)
    if sha is None:
        _ignored(ref, "its event names no git commit (docs/flux.md, HelmReleases)")
        return web.Response(status=204)
    state = event_state(event.reason, event.severity)
    if state is None:
        return web.Response(status=204)  # a reason that says nothing of how it deployed
    deploy = deploy_report(ref.target, sha, state.phase, state.health, state.sync)
    await ctx.publish(deploy, ctx.runtime.topics.deploys, key=deploy.app, route="flux")
    return web.json_response({"event_id": str(deploy.event_id)}, status=202)


_LOGGED: OrderedDict[tuple[str, str], None] = OrderedDict()
_LOGGED_MAX = 10_000


def _ignored(ref: FluxRef, why: str) -> None:
    """Log once per object and cause (bounded: the oldest are forgotten first)."""
    key = (ref.target, why)
    if key in _LOGGED:
        return
    _LOGGED[key] = None
    while len(_LOGGED) > _LOGGED_MAX:
        _LOGGED.popitem(last=False)
    logger.info("Flux event about %s ignored: %s", ref.target, why)


def openapi_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the request body's schema, the component schemas it refers to) for openapi.py."""
    keys, schemas = models_json_schema(
        [(FluxEvent, "validation")], ref_template="#/components/schemas/{model}"
    )
    return keys[(FluxEvent, "validation")], schemas["$defs"]
