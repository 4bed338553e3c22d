"""A fake Kubernetes API server holding Flux objects (Kustomizations and HelmReleases), for
the reconciler's Flux source (shared/flux_api.py).

Answers like kube-apiserver for ``GET /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}``:
the bearer token is checked (401 ``Status`` without a known one), a token may read only the
namespaces it was given (403 ``Forbidden`` naming the user, resource and group, as RBAC
says it), an unknown group, version or resource is 404 "the server could not find the
requested resource", an absent object 404 ``NotFound`` with its details; objects are the
JSON the API serves (apiVersion, kind, metadata with generation and labels, spec, status).
Optionally over TLS. Every request is recorded.
"""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

# What the API server serves of Flux's CRDs: group → (versions, {plural: kind}).
RESOURCES: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "kustomize.toolkit.fluxcd.io": (("v1", "v1beta2"), {"kustomizations": "Kustomization"}),
    "helm.toolkit.fluxcd.io": (("v2", "v2beta2"), {"helmreleases": "HelmRelease"}),
}


def _status(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> web.Response:
    doc: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        doc["details"] = details
    return web.json_response(doc, status=code)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, status: str, reason: str, message: str = "", gen: int = 1) -> Any:
    """A ``metav1.Condition`` as Flux writes it."""
    return {
        "type": kind,
        "status": status,
        "observedGeneration": gen,
        "lastTransitionTime": _now(),
        "reason": reason,
        "message": message or reason,
    }


@dataclass
class FakeKube:
    """Tokens (``tokens``: token → (user, namespaces it may read)) and objects."""

    tokens: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    objects: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, token)
    url: str = ""
    _runner: web.AppRunner | None = None

    def allow(self, token: str, *namespaces: str, user: str = "waveline") -> None:
        self.tokens[token] = (f"system:serviceaccount:waveline:{user}", frozenset(namespaces))

    def put(self, obj: dict[str, Any]) -> None:
        """Store (or replace) an object; ``apiVersion`` says its group."""
        group = obj["apiVersion"].partition("/")[0]
        plural = next(p for p, k in RESOURCES[group][1].items() if k == obj["kind"])
        meta = obj["metadata"]
        self.objects[(group, plural, meta["namespace"], meta["name"])] = obj

    def kustomization(
        self,
        namespace: str,
        name: str,
        *,
        applied: str | None,
        attempted: str | None = None,
        conditions: list[Any],
        generation: int = 1,
        observed: int | None = None,
    ) -> dict[str, Any]:
        """A kustomize.toolkit.fluxcd.io/v1 Kustomization; revisions as ``main@sha1:…``."""
        status: dict[str, Any] = {
            "observedGeneration": generation if observed is None else observed,
            "conditions": conditions,
        }
        if applied is not None:
            status["lastAppliedRevision"] = f"main@sha1:{applied}"
        if attempted or applied:
            status["lastAttemptedRevision"] = f"main@sha1:{attempted or applied}"
        obj = {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": self._meta(namespace, name, generation, {}),
            "spec": {
                "interval": "10m",
                "path": f"./{namespace}",
                "prune": True,
                "wait": True,
                "sourceRef": {"kind": "GitRepository", "name": "cfg", "namespace": "flux-system"},
            },
            "status": status,
        }
        self.put(obj)
        return obj

    def helmrelease(
        self,
        namespace: str,
        name: str,
        *,
        parent: tuple[str, str] | None,
        conditions: list[Any],
        chart_version: str = "6.3.5",
        generation: int = 1,
        observed: int | None = None,
    ) -> dict[str, Any]:
        """A helm.toolkit.fluxcd.io/v2 HelmRelease, labelled as applied by the Kustomization
        ``parent`` (namespace, name) as kustomize-controller labels what it applies."""
        labels = {}
        if parent is not None:
            labels = {
                "kustomize.toolkit.fluxcd.io/namespace": parent[0],
                "kustomize.toolkit.fluxcd.io/name": parent[1],
            }
        obj = {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": self._meta(namespace, name, generation, labels),
            "spec": {
                "interval": "5m",
                "chart": {"spec": {"chart": "podinfo", "version": chart_version}},
            },
            "status": {
                "observedGeneration": generation if observed is None else observed,
                "conditions": conditions,
                "lastAttemptedRevision": chart_version,
                "history": [
                    {
                        "chartName": "podinfo",
                        "chartVersion": chart_version,
                        "configDigest": "sha256:" + "c" * 64,
                        "digest": "sha256:" + "d" * 64,
                        "firstDeployed": _now(),
                        "lastDeployed": _now(),
                        "name": name,
                        "namespace": namespace,
                        "status": "deployed",
                        "version": 1,
                    }
                ],
            },
        }
        self.put(obj)
        return obj

    @staticmethod
    def _meta(namespace: str, name: str, generation: int, labels: dict[str, str]) -> Any:
        return {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "56921",
            "generation": generation,
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "labels": labels,
        }

    async def _get(self, request: web.Request) -> web.Response:
        m = request.match_info
        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        self.requests.append((request.path, token))
        if token not in self.tokens:
            return _status(401, "Unauthorized", "Unauthorized")
        user, namespaces = self.tokens[token]
        group, version, plural = m["group"], m["version"], m["plural"]
        served = RESOURCES.get(group)
        if served is None or version not in served[0] or plural not in served[1]:
            return _status(404, "NotFound", "the server could not find the requested resource")
        details = {"name": m["name"], "group": group, "kind": plural}
        if m["namespace"] not in namespaces:
            return _status(
                403,
                "Forbidden",
                f'{plural}.{group} "{m["name"]}" is forbidden: User "{user}" cannot get'
                f' resource "{plural}" in API group "{group}" in the namespace'
                f' "{m["namespace"]}"',
                details,
            )
        obj = self.objects.get((group, plural, m["namespace"], m["name"]))
        if obj is None:
            return _status(404, "NotFound", f'{plural}.{group} "{m["name"]}" not found', details)
        return web.json_response({**obj, "apiVersion": f"{group}/{version}"})

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_get(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}", self._get
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
