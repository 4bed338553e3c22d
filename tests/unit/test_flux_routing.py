"""The reconciler reads a Flux target through the Kubernetes API and an Argo CD one through
Argo CD's: each source only for its own targets, none when its API is not configured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from tests.fluxevents import flux_config
from waveline.services.reconciler.service import deploy_router
from waveline.shared.argocd_api import ArgoCdApi
from waveline.shared.config import Secrets, Settings
from waveline.shared.deploy_sources import DeploySource
from waveline.shared.flux_api import FluxSource
from waveline.shared.flux_config import FluxSettings
from waveline.shared.reconcile_config import ReconcileSettings
from waveline.shared.runtime import bootstrap

ARGO = ReconcileSettings(argocd_api_url="https://argocd.example", argocd_api_token=SecretStr("a"))
KUBE = FluxSettings(kube_api_url="https://kubernetes.default.svc", kube_api_token=SecretStr("k"))


def _router(
    tmp_path: Path, reconcile: ReconcileSettings, flux: FluxSettings
) -> tuple[Callable[[str], DeploySource | None], list[DeploySource]]:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", reconcile=reconcile, flux=flux)
    config = flux_config((tmp_path / "x.git").as_uri())
    return deploy_router(bootstrap("reconciler", settings, config, Secrets()))


def test_each_target_goes_to_its_deployer(tmp_path: Path) -> None:
    route, sources = _router(tmp_path, reconcile=ARGO, flux=KUBE)
    assert isinstance(route("Kustomization/staging/webapp"), FluxSource)
    assert isinstance(route("HelmRelease/staging/podinfo"), FluxSource)
    assert isinstance(route("staging-us"), ArgoCdApi)
    assert len(sources) == 2


def test_no_api_no_source(tmp_path: Path) -> None:
    route, sources = _router(tmp_path, reconcile=ARGO, flux=FluxSettings())
    assert route("Kustomization/staging/webapp") is None  # never asked of Argo CD
    assert isinstance(route("staging-us"), ArgoCdApi)
    route, sources = _router(tmp_path, reconcile=ReconcileSettings(), flux=KUBE)
    assert route("staging-us") is None
    assert isinstance(route("Kustomization/staging/webapp"), FluxSource)
    assert len(sources) == 1
