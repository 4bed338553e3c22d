"""Events as Flux's notification-controller posts them to a ``generic`` or ``generic-hmac``
Provider (docs/flux.md): the Event of fluxcd/pkg ``apis/event/v1beta1`` as JSON, with the
metadata keys as the controller forwards them (since Flux 2.2 the involved object's group
is stripped from them; earlier ones kept it), and the ``X-Signature`` it adds.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from tests.support import make_config
from waveline.shared.config import WavelineConfig

KUSTOMIZE_API = "kustomize.toolkit.fluxcd.io/v1"
HELM_API = "helm.toolkit.fluxcd.io/v2"


def event(
    *,
    kind: str = "Kustomization",
    namespace: str = "apps",
    name: str = "webapp",
    reason: str = "ReconciliationSucceeded",
    severity: str = "info",
    metadata: dict[str, str] | None = None,
    message: str = "Reconciliation finished in 2.1s, next run in 10m0s",
    api_version: str | None = None,
    controller: str | None = None,
) -> dict[str, Any]:
    """One event, shaped as the notification-controller forwards it."""
    if api_version is None:
        api_version = KUSTOMIZE_API if kind == "Kustomization" else HELM_API
    if controller is None:
        controller = "kustomize-controller" if kind == "Kustomization" else "helm-controller"
    doc: dict[str, Any] = {
        "involvedObject": {
            "kind": kind,
            "namespace": namespace,
            "name": name,
            "uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632",
            "apiVersion": api_version,
            "resourceVersion": "56921",
        },
        "severity": severity,
        "timestamp": "2026-12-07T15:26:19Z",
        "message": message,
        "reason": reason,
        "reportingController": controller,
        "reportingInstance": f"{controller}-7c7b47f5f-8bhrp",
    }
    if metadata:
        doc["metadata"] = metadata
    return doc


def kustomization_applied(sha: str, *, name: str = "webapp", namespace: str = "apps") -> Any:
    """kustomize-controller's event after a reconciliation that ended Ready (Flux 2.2+)."""
    return event(
        name=name,
        namespace=namespace,
        metadata={"revision": f"main@sha1:{sha}", "commit_status": "update"},
    )


def body_of(doc: dict[str, Any]) -> bytes:
    """The bytes Flux sends (Go's json.Marshal: compact)."""
    return json.dumps(doc, separators=(",", ":")).encode()


def signature(key: str, body: bytes, algorithm: str = "sha256") -> str:
    """``X-Signature`` as a generic-hmac Provider with ``token`` ``key`` sends it."""
    return f"{algorithm}={hmac.new(key.encode(), body, algorithm).hexdigest()}"


STAGING = ("Kustomization/staging/webapp", "HelmRelease/staging/podinfo")


def flux_config(url: str, *, targets: tuple[str, ...] = STAGING) -> WavelineConfig:
    """The test config (tests/support.py) with Flux objects as the staging wave's targets."""
    raw = make_config(url).model_dump(mode="json")
    raw["pipelines"]["app"]["waves"][0]["targets"] = list(targets)
    return WavelineConfig.model_validate(raw)
