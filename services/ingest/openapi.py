"""The OpenAPI 3.1 document of the ingest API, served at ``/openapi.json``.

Request schemas come from the message models, so the document cannot drift from what the
handlers validate; a test checks that every route is documented and nothing else is.
"""

from __future__ import annotations

from typing import Any

from waveline import __version__
from waveline.shared.models.images import ImageRef, ImageSetAnnounced

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


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ERROR for c in codes}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def document() -> dict[str, Any]:
    announce = ImageSetAnnounced.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = announce.pop("$defs", {})
    announce["properties"] = {
        k: v
        for k, v in announce["properties"].items()
        if k not in {"event_id", "received_at", "source"}
    }
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    pipeline = {"name": "pipeline", "in": "path", "required": True, "schema": {"type": "string"}}
    wave = {"name": "wave", "in": "path", "required": True, "schema": {"type": "string"}}
    paths: dict[str, Any] = {
        "/v1/images": {
            "post": {
                "summary": "Announce an image set (CI token)",
                "security": bearer,
                "requestBody": _json_body({"$ref": "#/components/schemas/ImageSetAnnounced"}),
                "responses": {"202": _ACCEPTED, **_errors(400, 401, 403, 404, 413, 422, 503)},
            }
        },
        "/v1/pipelines/{pipeline}/images": {
            "post": {
                "summary": "Announce seed 001's bare {service: {Tag, Digest}} object (CI token)",
                "security": bearer,
                "parameters": [
                    pipeline,
                    {
                        "name": "app_sha",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "additionalProperties": {"$ref": "#/components/schemas/ImageRef"},
                    }
                ),
                "responses": {"202": _ACCEPTED, **_errors(400, 401, 403, 404, 413, 422, 503)},
            }
        },
        "/v1/webhooks/github": {
            "post": {
                "summary": "GitHub status, check_run, check_suite, ping (X-Hub-Signature-256)",
                "parameters": [
                    {
                        "name": "X-GitHub-Event",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "X-Hub-Signature-256",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": _json_body({"type": "object"}),
                "responses": {
                    "202": _ACCEPTED,
                    "204": {"description": "ignored kind or repository"},
                    **_errors(400, 401, 403, 413, 422, 503),
                },
            }
        },
        "/v1/webhooks/argocd": {
            "post": {
                "summary": "argocd-notifications webhook (Argo token)",
                "security": bearer,
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "required": ["app", "revision"],
                        "properties": {
                            k: {"type": "string"}
                            for k in ("app", "revision", "phase", "health", "sync")
                        },
                    }
                ),
                "responses": {
                    "202": _ACCEPTED,
                    "204": {"description": "not a wave's target, or no single revision"},
                    **_errors(400, 401, 403, 413, 422, 503),
                },
            }
        },
        "/v1/pipelines/{pipeline}/waves/{wave}/{action}": {
            "post": {
                "summary": "approve, hold, release or rollback a wave (operator token)",
                "security": bearer,
                "parameters": [
                    pipeline,
                    wave,
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"enum": ["approve", "hold", "release", "rollback"]},
                    },
                ],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "to": {
                                        "type": "string",
                                        "description": "rollback: app sha or 'previous'",
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {"202": _ACCEPTED, **_errors(400, 401, 403, 404, 422, 503)},
            }
        },
        "/v1/pipelines/{pipeline}": {
            "get": {
                "summary": "Waves (image set, config commit, state, gates) and pending commits",
                "security": bearer,
                "parameters": [pipeline],
                "responses": {"200": {"description": "pipeline state"}, **_errors(401, 403, 404)},
            }
        },
        "/v1/pipelines/{pipeline}/waves/{wave}/promotions/{promotion}/result": {
            "post": {
                "summary": "the result of a webhook promotion (operator or pipeline result token)",
                "security": bearer,
                "parameters": [
                    pipeline,
                    wave,
                    {
                        "name": "promotion",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                ],
                "requestBody": _json_body(
                    {
                        "type": "object",
                        "required": ["status"],
                        "properties": {
                            "status": {"enum": ["succeeded", "failed"]},
                            "detail": {"type": "string", "maxLength": 2000},
                        },
                    }
                ),
                "responses": {"202": _ACCEPTED, **_errors(400, 401, 403, 404, 409, 422, 503)},
            }
        },
        "/": {
            "get": {
                "summary": "dashboard page of the waves (operator token, or from loopback)",
                # Optional: a request from loopback without a proxy header needs no token.
                "security": [*bearer, {}],
                "responses": {
                    "200": {
                        "description": "self-contained HTML page, refreshed every 5 s",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 403),
                },
            }
        },
        "/healthz": {
            "get": {"summary": "liveness", "responses": {"200": {"description": "alive"}}}
        },
        "/readyz": {
            "get": {
                "summary": "readiness: Kafka and Postgres reachable",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": {"description": "metrics"}},
            }
        },
        "/openapi.json": {
            "get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI"}}}
        },
    }
    schemas = {**defs, "ImageSetAnnounced": announce}
    schemas.setdefault("ImageRef", ImageRef.model_json_schema())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Waveline ingest", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
