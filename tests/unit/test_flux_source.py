"""``FluxSource`` (shared/flux_api.py) against the fake Kubernetes API (tests/fakekube.py):
Kustomizations and HelmReleases become the deploy reports their events would have made."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fakekube import FakeKube, condition
from tests.kafka_certs import make_authority, make_leaf
from waveline.shared.deploy_sources import REPORT_NS
from waveline.shared.errors import ConfigError
from waveline.shared.flux_api import FluxSource, KubeApiError
from waveline.shared.flux_config import FluxSettings
from waveline.shared.models.deploys import DeployReported

TOKEN = "kube-token-for-flux-tests-13579"
A = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
B = "5d4e1a6c2f8b9e0d3c7a1b2e4f6a8c0d2e4f6a8c"
READY = condition("Ready", "True", "ReconciliationSucceeded")
HEALTHY = condition("Healthy", "True", "Succeeded")


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    fake = FakeKube()
    fake.allow(TOKEN, "staging", "flux-system")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def source(kube: FakeKube) -> AsyncIterator[FluxSource]:
    flux = FluxSource(FluxSettings(kube_api_url=kube.url, kube_api_token=SecretStr(TOKEN)))
    yield flux
    await flux.close()


async def _read(source: FluxSource, target: str) -> DeployReported | None:
    async with asyncio.timeout(5):
        return await source.read(target)


def _words(report: DeployReported | None) -> tuple[str, str, str, str] | None:
    if report is None:
        return None
    return (report.revision, report.phase, report.health, report.sync)


async def test_a_ready_kustomization_is_deployed(kube: FakeKube, source: FluxSource) -> None:
    kube.kustomization("staging", "webapp", applied=A, conditions=[READY, HEALTHY])
    report = await _read(source, "Kustomization/staging/webapp")
    assert report is not None and report.app == "Kustomization/staging/webapp"
    assert _words(report) == (A, "Succeeded", "Healthy", "Synced")
    # The id ingest gives the same fact notified (shared/deploy_sources.py).
    meaning = f"deploy/Kustomization/staging/webapp/{A}/Succeeded/Healthy/Synced"
    assert report.event_id == uuid.uuid5(REPORT_NS, meaning)
    path, token = kube.requests[-1]
    assert path == "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/staging/kustomizations/webapp"
    assert token == TOKEN


async def test_kustomization_states(kube: FakeKube, source: FluxSource) -> None:
    target = "Kustomization/staging/webapp"
    cases = [
        # A new commit being applied: the attempt is what the conditions are about.
        (
            dict(
                applied=A,
                attempted=B,
                conditions=[
                    condition("Ready", "Unknown", "Progressing"),
                    condition("Reconciling", "True", "Progressing"),
                ],
            ),
            (B, "Running", "Progressing", "OutOfSync"),
        ),
        (
            dict(
                applied=A,
                attempted=B,
                conditions=[
                    condition("Ready", "False", "HealthCheckFailed"),
                    condition("Healthy", "False", "HealthCheckFailed"),
                ],
            ),
            (B, "Failed", "Degraded", "Synced"),
        ),
        (
            dict(
                applied=A,
                attempted=B,
                conditions=[
                    condition("Ready", "False", "BuildFailed"),
                    condition("Stalled", "True", "BuildFailed"),
                ],
            ),
            (B, "Failed", "Degraded", "OutOfSync"),
        ),
        # A spec its controller has not seen yet.
        (
            dict(applied=A, conditions=[READY], generation=3, observed=2),
            (A, "Running", "Progressing", "OutOfSync"),
        ),
    ]
    for fields, words in cases:
        kube.kustomization("staging", "webapp", **fields)  # type: ignore[arg-type]
        assert _words(await _read(source, target)) == words, fields


async def test_what_names_no_commit_is_none(kube: FakeKube, source: FluxSource) -> None:
    kube.kustomization("staging", "webapp", applied=None, conditions=[])
    assert await _read(source, "Kustomization/staging/webapp") is None
    assert await _read(source, "staging-us") is None  # an Argo CD application
    assert kube.requests[-1][0].endswith("/webapp")  # nothing asked for it


async def test_a_helmrelease_reports_its_kustomizations_commit(
    kube: FakeKube, source: FluxSource
) -> None:
    kube.kustomization("flux-system", "apps", applied=A, attempted=B, conditions=[READY])
    upgraded = condition("Ready", "True", "UpgradeSucceeded")
    kube.helmrelease("staging", "podinfo", parent=("flux-system", "apps"), conditions=[upgraded])
    target = "HelmRelease/staging/podinfo"
    # The commit the Kustomization applied (the HelmRelease's spec), not the one it tries.
    assert _words(await _read(source, target)) == (A, "Succeeded", "Healthy", "Synced")
    paths = [p for p, _ in kube.requests]
    assert paths[-1] == "/apis/helm.toolkit.fluxcd.io/v2/namespaces/staging/helmreleases/podinfo"
    assert paths[-2].endswith("/namespaces/flux-system/kustomizations/apps")
    failed = condition("Ready", "False", "UpgradeFailed")
    kube.helmrelease(
        "staging", "podinfo", parent=("flux-system", "apps"), conditions=[failed], generation=2
    )
    assert _words(await _read(source, target)) == (A, "Failed", "Degraded", "OutOfSync")
    kube.helmrelease("staging", "orphan", parent=None, conditions=[upgraded])
    assert await _read(source, "HelmRelease/staging/orphan") is None


async def test_refusals_and_absences(kube: FakeKube) -> None:
    wrong = FluxSource(FluxSettings(kube_api_url=kube.url, kube_api_token=SecretStr("nope")))
    try:
        with pytest.raises(KubeApiError) as refused:
            await _read(wrong, "Kustomization/staging/webapp")
        assert refused.value.status == 401 and not refused.value.retriable
        assert "nope" not in str(refused.value)
    finally:
        await wrong.close()
    right = FluxSource(FluxSettings(kube_api_url=kube.url, kube_api_token=SecretStr(TOKEN)))
    try:
        with pytest.raises(KubeApiError) as forbidden:
            await _read(right, "Kustomization/prod/webapp")  # RBAC: not this namespace
        assert forbidden.value.status == 403 and "forbidden" in str(forbidden.value)
        with pytest.raises(KubeApiError) as absent:
            await _read(right, "Kustomization/staging/gone")
        assert absent.value.status == 404 and not absent.value.retriable
    finally:
        await right.close()
    await kube.stop()
    down = FluxSource(FluxSettings(kube_api_url=kube.url, kube_api_token=SecretStr(TOKEN)))
    try:
        with pytest.raises(KubeApiError) as unreachable:
            await _read(down, "Kustomization/staging/webapp")
        assert unreachable.value.retriable and TOKEN not in str(unreachable.value)
    finally:
        await down.close()


async def test_token_file_and_ca_file(tmp_path: Path) -> None:
    ca = make_authority(tmp_path / "tls", "kube")
    leaf = make_leaf(ca, tmp_path / "tls", "apiserver")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    kube = FakeKube()
    kube.allow(TOKEN, "staging")
    kube.kustomization("staging", "webapp", applied=A, conditions=[READY])
    url = await kube.start(context)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    try:
        settings = FluxSettings(
            kube_api_url=url, kube_api_token_file=token_file, kube_api_ca_file=ca.cert
        )
        trusted = FluxSource(settings)
        try:
            assert _words(await _read(trusted, "Kustomization/staging/webapp"))
            token_file.write_text("rotated-token")  # read again on every request
            kube.allow("rotated-token", "staging")
            assert await _read(trusted, "Kustomization/staging/webapp") is not None
            assert kube.requests[-1][1] == "rotated-token"
        finally:
            await trusted.close()
        # Without the CA, the server's certificate is not trusted.
        untrusted = FluxSource(settings.model_copy(update={"kube_api_ca_file": None}))
        try:
            with pytest.raises(KubeApiError) as refused:
                await _read(untrusted, "Kustomization/staging/webapp")
            assert refused.value.retriable
        finally:
            await untrusted.close()
    finally:
        await kube.stop()


def test_settings_needed() -> None:
    with pytest.raises(ConfigError):
        FluxSource(FluxSettings())
    with pytest.raises(ConfigError):
        FluxSource(FluxSettings(kube_api_url="https://kubernetes.default.svc"))
