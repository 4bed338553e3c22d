"""The OpenAPI 3.1 document of the ingest API, served at ``/openapi.json``.

Request schemas come from the message models, so the document cannot drift from what the
handlers validate; a test checks that every route is documented and nothing else is.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from waveline import __version__
from waveline.services.ingest.flux import openapi_schemas as flux_schemas
from waveline.services.ingest.freeze_http import approve_body_schema, openapi_paths
from waveline.services.ingest.gitlab_facts import EVENTS as GITLAB_EVENTS
from waveline.services.ingest.gitlab_payloads import JobHook, MergeRequestHook, PipelineHook
from waveline.services.ingest.ignore_rules import REASONS
from waveline.services.ingest.payloads import (
    ArgoReport,
    CheckRunDelivery,
    CheckSuiteDelivery,
    PromotionResult,
    PullRequestDelivery,
    Rollback,
    StatusDelivery,
)
from waveline.shared.models.images import MAX_SERVICES
from waveline.shared.names import NAME_PATTERN

_ERROR = {
    "description": "error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error", "detail"],
                "properties": {"error": {"type": "string"}, "detail": {}},
            }
        }
    },
}
_ACCEPTED = {
    "description": "accepted: durable in Kafka",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"event_id": {"type": "string", "format": "uuid"}},
            }
        }
    },
}

# Retry after eviction (services/ingest/retry.py, docs/gates.md): what an announcement or a
# retry did about the set's attempts.
_ATTEMPT = {
    "outcome": {"enum": ["announced", "new_attempt", "pending", "on_watched", "not_retriable"]},
    "attempt": {"type": "integer", "minimum": 1},
    "detail": {"type": "string"},
}
# A lifted quarantine (services/ingest/quarantine_http.py): the set and who lifted it.
_LIFTED = {
    "description": "the quarantine was lifted; ``was`` says what it was",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["pipeline", "app_sha", "lifted_by", "was"],
                "properties": {
                    "pipeline": {"type": "string"},
                    "app_sha": {"type": "string"},
                    "lifted_by": {"type": "string"},
                    "was": {"type": "object"},
                },
            }
        }
    },
}
_ANNOUNCED = {
    "description": "accepted: durable in Kafka; outcome says whether a set announced before"
    " made a new attempt (its last commit was evicted) or changed nothing",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["event_id", "outcome", "attempt"],
                "properties": {"event_id": {"type": "string", "format": "uuid"}, **_ATTEMPT},
            }
        }
    },
}


# What a GitHub delivery that changes nothing is answered (services/ingest/ignore_rules.py).
_WHY = {
    "ignored": {"type": "boolean"},
    "reason": {"enum": list(REASONS)},
    "detail": {"type": "string"},
}
_GITHUB_ANSWERS = {
    "200": {
        "description": "nothing published: this X-GitHub-Delivery was handled before"
        " (duplicate), or the delivery changes nothing and the answer says why (an event"
        " kind or action not read, a repository not configured, a context not required, a"
        " commit already judged)",
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {
                            "type": "object",
                            "required": ["duplicate", "delivery"],
                            "properties": {
                                "duplicate": {"const": True},
                                "delivery": {"type": "string"},
                            },
                        },
                        {
                            "type": "object",
                            "required": ["ignored", "reason", "detail"],
                            "properties": {**_WHY, "ignored": {"const": True}},
                        },
                    ]
                }
            }
        },
    },
    "202": {
        "description": "accepted: durable in Kafka; a check on a commit not (yet) known on"
        " auto says so (reason sha_not_on_auto, ignored false)",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["event_id"],
                    "properties": {"event_id": {"type": "string", "format": "uuid"}, **_WHY},
                }
            }
        },
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    # Every request with a Content-Encoding is refused (415), whatever the operation.
    return {str(c): _ERROR for c in sorted({*codes, 415})}


def _json_body(schema: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _body_of(model: type[BaseModel]) -> dict[str, Any]:
    """The request schema of a ``payloads`` model (none of them nests another)."""
    schema = model.model_json_schema()
    assert "$defs" not in schema, model
    return schema


# The parts of GitHub's deliveries ingest reads, in the order of X-GitHub-Event's status,
# check_run, check_suite and pull_request.
_GITHUB_KEYS, _GITHUB_SCHEMAS = models_json_schema(
    [
        (m, "validation")
        for m in (StatusDelivery, CheckRunDelivery, CheckSuiteDelivery, PullRequestDelivery)
    ],
    ref_template="#/components/schemas/{model}",
)
_GITHUB_REFS = list(_GITHUB_KEYS.values())
# GitLab's, in the order of X-Gitlab-Event's Merge Request, Pipeline and Job Hook.
_GITLAB_KEYS, _GITLAB_SCHEMAS = models_json_schema(
    [(m, "validation") for m in (MergeRequestHook, PipelineHook, JobHook)],
    ref_template="#/components/schemas/{model}",
)
_GITLAB_REFS = list(_GITLAB_KEYS.values())

# What ``shared/names.py`` and the message models check, as patterns, so a body the
# document calls valid is one the handlers take (but for the digest's repository, which must
# be the tag's: JSON Schema cannot compare two fields).
_NAME = {"type": "string", "pattern": NAME_PATTERN}
_APP_SHA = {"type": "string", "pattern": r"^[a-f0-9]{7,64}$"}
_REPO = (
    r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_IMAGE_REF = {
    "type": "object",
    "description": "One service's image: Tag is repository:tag, Digest is"
    " repository@sha256:… (the same repository) or a bare sha256:…",
    "required": ["Tag", "Digest"],
    "additionalProperties": False,
    "properties": {
        "Tag": {"type": "string", "pattern": rf"^{_REPO}:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}$"},
        "Digest": {"type": "string", "pattern": rf"^(?:{_REPO}@)?sha256:[a-f0-9]{{64}}$"},
    },
}
_IMAGES = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": MAX_SERVICES,
    "propertyNames": _NAME,
    "additionalProperties": {"$ref": "#/components/schemas/ImageRef"},
}
_ANNOUNCE = {
    "type": "object",
    "description": "An image set: CI's announcement (event_id, received_at, source and actor,"
    " the token's name, are set by ingest); 422 image_not_allowed when an image's repository"
    " is outside the pipeline's allowed_images",
    "required": ["pipeline", "app_sha", "images"],
    "additionalProperties": False,
    "properties": {
        "pipeline": _NAME,
        "app_sha": _APP_SHA,
        "images": _IMAGES,
        "force": {
            "type": "boolean",
            "description": "announce a set quarantined by a rollback anyway, lifting its"
            " quarantine (without it: 409 quarantined)",
        },
        # DORA's lead time starts here when CI sends it (docs/dora.md).
        "app_committed_at": {
            "type": "string",
            "format": "date-time",
            "description": "the app commit's time, with an offset (lead time for changes)",
        },
    },
}


def _post(
    summary: str,
    body: dict[str, Any],
    accepted: dict[str, Any],
    *codes: int,
    parameters: list[dict[str, Any]] | None = None,
    secured: bool = True,
) -> dict[str, Any]:
    """A POST that reads ``body``: what ``body.py`` may answer besides ``codes``."""
    operation: dict[str, Any] = {
        "summary": summary,
        "requestBody": body,
        "responses": {**accepted, **_errors(400, 408, 413, 422, 503, *codes)},
    }
    if secured:
        operation["security"] = _BEARER
    if parameters:
        operation["parameters"] = parameters
    return {"post": operation}


def _get(summary: str, ok: dict[str, Any], *codes: int, **extra: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, **extra, "responses": {"200": ok, **_errors(*codes)}}}


_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

# Flux's events: the body's schema and the component schemas it refers to.
_FLUX_BODY, _FLUX_SCHEMAS = flux_schemas()


def _path(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _header(name: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": True, "schema": {"type": "string", **schema}}


def document() -> dict[str, Any]:
    pipeline, wave = _path("pipeline"), _path("wave")
    image_set = _json_body({"$ref": "#/components/schemas/ImageSetAnnounced"})
    bare_images = _json_body(_IMAGES)
    paths: dict[str, Any] = {
        "/v1/images": _post(
            "Announce an image set (a CI token covering the pipeline)",
            image_set,
            {"202": _ANNOUNCED},
            401,
            403,
            404,
            409,
        ),
        "/v1/pipelines/{pipeline}/images": _post(
            "Announce a bare {service: {Tag, Digest}} object for the path's pipeline (a CI token"
            " covering the pipeline)",
            bare_images,
            {"202": _ANNOUNCED},
            401,
            403,
            404,
            409,
            parameters=[
                pipeline,
                {"name": "app_sha", "in": "query", "required": True, "schema": _APP_SHA},
                {
                    "name": "force",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["true", "false"]},
                    "description": "announce a quarantined set anyway, lifting its quarantine",
                },
                {
                    "name": "app_committed_at",
                    "in": "query",
                    "required": False,
                    "description": "the app commit's time, with an offset (docs/dora.md)",
                    "schema": {"type": "string", "format": "date-time"},
                },
            ],
        ),
        "/v1/webhooks/github": _post(
            "A GitHub delivery (X-Hub-Signature-256 over the body): status, check_run,"
            " check_suite and pull_request are read, every other event is ignored",
            _json_body(
                {
                    "anyOf": [
                        *_GITHUB_REFS,
                        {"type": "object", "description": "any other event (ignored)"},
                    ],
                    "description": "GitHub's payload for X-GitHub-Event; only the fields"
                    " shown are read",
                }
            ),
            _GITHUB_ANSWERS,
            401,
            403,
            parameters=[
                {
                    "name": "X-GitHub-Delivery",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 100},
                },
                _header(
                    "X-GitHub-Event",
                    minLength=1,
                    examples=["status", "check_run", "check_suite", "pull_request", "ping"],
                ),
                _header("X-Hub-Signature-256", description="sha256=<HMAC of the body>"),
            ],
            secured=False,
        ),
        "/v1/webhooks/gitlab": _post(
            "A GitLab webhook (X-Gitlab-Token, the webhook's secret token): Merge Request,"
            " Pipeline and Job Hook are read, every other event is ignored",
            _json_body(
                {
                    "anyOf": [
                        *_GITLAB_REFS,
                        {"type": "object", "description": "any other event (ignored)"},
                    ],
                    "description": "GitLab's payload for X-Gitlab-Event; only the fields"
                    " shown are read",
                }
            ),
            {
                "202": {
                    "description": "accepted: every event durable in Kafka",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["event_ids"],
                                "properties": {
                                    "event_ids": {
                                        "type": "array",
                                        "items": {"type": "string", "format": "uuid"},
                                    }
                                },
                            }
                        }
                    },
                },
                "204": {"description": "an event, project or action Waveline ignores"},
            },
            401,
            403,
            parameters=[
                _header("X-Gitlab-Event", minLength=1, examples=[*GITLAB_EVENTS, "Push Hook"]),
                _header("X-Gitlab-Token", description="the webhook's secret token"),
            ],
            secured=False,
        ),
        "/v1/webhooks/argocd": _post(
            "argocd-notifications webhook (an Argo CD token covering every pipeline whose"
            " waves list the app)",
            _json_body(_body_of(ArgoReport)),
            {
                "202": _ACCEPTED,
                "204": {"description": "not a wave's target, or no single revision"},
            },
            401,
            403,
        ),
        "/v1/webhooks/flux": _post(
            "An event of Flux's notification-controller (a generic-hmac Provider's"
            " X-Signature over the body, or a generic one's bearer Flux token; 401 without"
            " either or for a signature that does not match, 403 for a wrong token)",
            _json_body(_FLUX_BODY),
            {
                "202": _ACCEPTED,
                "204": {
                    "description": "not a Kustomization or HelmRelease a wave lists, no"
                    " commit named, or a reason that says nothing of how it deployed"
                },
            },
            401,
            403,
        ),
        "/v1/pipelines/{pipeline}/waves/{wave}/{action}": _post(
            "approve, hold or release a wave (an operator token covering the pipeline; its"
            " name is recorded as the actor). The command names the image set waiting at the"
            " gate (approve, hold) or the hold it ends (release); 409: nothing to approve or"
            " release; approve with break_glass lets the set through a freeze",
            _json_body(approve_body_schema(), required=False),
            {"202": _ACCEPTED},
            401,
            403,
            404,
            409,
            parameters=[
                pipeline,
                wave,
                _path("action", {"enum": ["approve", "hold", "release"]}),
            ],
        ),
        "/v1/pipelines/{pipeline}/waves/{wave}/rollback": _post(
            "roll a wave back to its previous or a named image set, in one step (an operator"
            " token covering the pipeline)",
            _json_body(_body_of(Rollback)),
            {"202": _ACCEPTED},
            401,
            403,
            404,
            parameters=[pipeline, wave],
        ),
        "/v1/pipelines/{pipeline}/sets/{app_sha}/retry": _post(
            "retry an image set whose commit was evicted from auto: a new attempt (an operator"
            " token covering the pipeline; its name is recorded). 404: never announced; 409:"
            " its newest attempt is not evicted (the detail says where it is)",
            _json_body({"type": "object", "description": "nothing is read"}, required=False),
            {"202": _ANNOUNCED},
            401,
            403,
            404,
            409,
            parameters=[pipeline, _path("app_sha", _APP_SHA)],
        ),
        "/v1/pipelines/{pipeline}/sets/{app_sha}/unquarantine": _post(
            "lift the quarantine a rollback put on an image set (an operator token covering the"
            " pipeline; its name is recorded). 404: the set is not quarantined",
            _json_body({"type": "object", "description": "nothing is read"}, required=False),
            {"200": _LIFTED},
            401,
            403,
            404,
            parameters=[pipeline, _path("app_sha", _APP_SHA)],
        ),
        "/v1/pipelines/{pipeline}/waves/{wave}/promotions/{promotion}/result": _post(
            "the result of a webhook promotion (an operator or result token covering the pipeline)",
            _json_body(_body_of(PromotionResult)),
            {"202": _ACCEPTED},
            401,
            403,
            404,
            409,
            parameters=[pipeline, wave, _path("promotion", {"type": "string", "format": "uuid"})],
        ),
        "/v1/pipelines/{pipeline}": _get(
            "Waves (image set, config commit, state, gates, who announced, approved, held)"
            " and pending commits (an operator token covering the pipeline)",
            {"description": "pipeline state"},
            401,
            403,
            404,
            security=_BEARER,
            parameters=[pipeline],
        ),
        "/": _get(
            "dashboard page of the waves (an operator token: the pipelines it covers; or none"
            " with WAVELINE_DASHBOARD_OPEN=loopback, from loopback with a localhost Host)",
            {
                "description": "self-contained HTML page, refreshed every 5 s",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            401,
            403,
            # Optional only with WAVELINE_DASHBOARD_OPEN=loopback (docs/security.md).
            security=[*_BEARER, {}],
        ),
        "/healthz": _get("liveness", {"description": "alive"}),
        "/readyz": _get(
            "readiness: Kafka and Postgres reachable",
            {"description": "ready"},
        ),
        "/metrics": _get(
            "Prometheus metrics (the bearer WAVELINE_METRICS_TOKEN when it is set)",
            {"description": "metrics"},
            401,
            403,
            security=[*_BEARER, {}],
        ),
        "/openapi.json": _get("this document", {"description": "OpenAPI"}),
    }
    paths.update(openapi_paths(_post, _get, _json_body, _path, _BEARER))  # freezes
    paths["/readyz"]["get"]["responses"]["503"] = {"description": "not ready"}
    paths["/v1/webhooks/flux"]["post"]["security"] = [{"bearer": []}, {"fluxSignature": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Waveline ingest", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {
                "ImageSetAnnounced": _ANNOUNCE,
                "ImageRef": _IMAGE_REF,
                **_GITHUB_SCHEMAS["$defs"],
                **_GITLAB_SCHEMAS["$defs"],
                **_FLUX_SCHEMAS,
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "fluxSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Signature",
                    "description": "<hash>=<hex HMAC of the body> (sha256, sha224, sha384,"
                    " sha512), keyed by WAVELINE_FLUX_WEBHOOK_SECRET",
                },
            },
        },
    }
