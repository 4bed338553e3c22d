"""deploy/flux/: the Provider posts to the route ingest serves for Flux, signed; the Alert
sends what Waveline reads; the secret template holds only a placeholder; the reconciler's
role reads Flux objects and nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from waveline.services.ingest.openapi import document

FLUX = Path(__file__).resolve().parents[2] / "deploy" / "flux"


def _docs(name: str) -> list[Any]:
    with (FLUX / name).open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def test_provider_posts_signed_events_to_the_flux_route() -> None:
    (provider,) = _docs("provider.yaml")
    assert provider["apiVersion"] == "notification.toolkit.fluxcd.io/v1beta3"
    assert provider["kind"] == "Provider"
    assert provider["spec"]["type"] == "generic-hmac"
    address = urlparse(provider["spec"]["address"])
    assert address.path in document()["paths"]
    assert address.path == "/v1/webhooks/flux"
    assert address.hostname == "waveline-ingest.waveline.svc" and address.port == 8080
    (secret,) = _docs("secret.example.yaml")
    assert provider["spec"]["secretRef"]["name"] == secret["metadata"]["name"]
    assert provider["metadata"]["namespace"] == secret["metadata"]["namespace"]


def test_secret_template_holds_only_a_placeholder() -> None:
    (secret,) = _docs("secret.example.yaml")
    assert secret["kind"] == "Secret" and "data" not in secret
    assert set(secret["stringData"]) == {"token"}
    assert "REPLACE_ME" in secret["stringData"]["token"]


def test_alert_sends_info_and_error_events_of_the_deployers() -> None:
    (alert,) = _docs("alert.yaml")
    (provider,) = _docs("provider.yaml")
    assert alert["kind"] == "Alert"
    assert alert["spec"]["providerRef"]["name"] == provider["metadata"]["name"]
    assert alert["metadata"]["namespace"] == provider["metadata"]["namespace"]
    assert alert["spec"]["eventSeverity"] == "info"  # info and error
    kinds = {s["kind"] for s in alert["spec"]["eventSources"]}
    assert kinds == {"Kustomization", "HelmRelease"}


def test_example_target_waits_for_health() -> None:
    (kustomization,) = _docs("kustomization-example.yaml")
    assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert kustomization["spec"]["wait"] is True


def test_reconciler_role_only_reads_flux_objects() -> None:
    objects = {d["kind"]: d for d in _docs("reconciler-rbac.yaml")}
    rules = objects["ClusterRole"]["rules"]
    assert {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]} == {
        ("kustomize.toolkit.fluxcd.io", "kustomizations"),
        ("helm.toolkit.fluxcd.io", "helmreleases"),
    }
    assert all(rule["verbs"] == ["get"] for rule in rules)
    (subject,) = objects["ClusterRoleBinding"]["subjects"]
    account = objects["ServiceAccount"]["metadata"]
    assert (subject["name"], subject["namespace"]) == (account["name"], account["namespace"])
    (patch,) = _docs("reconciler-patch.yaml")
    spec = patch["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == account["name"]
    env = {e["name"] for e in spec["containers"][0]["env"]}
    assert env == {
        "WAVELINE_KUBE_API_URL",
        "WAVELINE_KUBE_API_TOKEN_FILE",
        "WAVELINE_KUBE_API_CA_FILE",
    }
