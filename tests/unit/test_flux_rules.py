"""Flux's rules (shared/flux.py): target names, revisions, reasons and conditions to states,
and the pipeline file taking Flux targets."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from tests.support import make_config
from waveline.shared.config import WavelineConfig
from waveline.shared.flux import (
    DEPLOYED,
    FAILED,
    PROGRESSING,
    UNHEALTHY,
    Condition,
    FluxRef,
    commit_of,
    event_commit,
    event_state,
    is_flux_target,
    parse_target,
    ref_of,
    status_state,
)
from waveline.shared.models.base import utcnow
from waveline.shared.models.deploys import DeployReported

SHA = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
LONGEST = ".".join(["b" * 63] * 3 + ["b" * 61])


@pytest.mark.parametrize(
    ("name", "ref"),
    [
        ("Kustomization/apps/webapp", FluxRef("Kustomization", "apps", "webapp")),
        ("HelmRelease/prod-eu/podinfo.v2", FluxRef("HelmRelease", "prod-eu", "podinfo.v2")),
        ("Kustomization/a/" + LONGEST, FluxRef("Kustomization", "a", LONGEST)),
    ],
)
def test_flux_target_names_parse(name: str, ref: FluxRef) -> None:
    assert parse_target(name) == ref
    assert is_flux_target(name)
    assert ref.target == name


@pytest.mark.parametrize(
    "name",
    [
        "staging-us",  # an Argo CD application
        "kustomization/apps/webapp",  # kinds are case-sensitive
        "GitRepository/flux-system/cfg",  # not a deployer
        "Kustomization/apps",
        "Kustomization/apps/webapp/extra",
        "Kustomization/Apps/webapp",  # Kubernetes names are lower-case
        "Kustomization/apps/-webapp",
        "Kustomization/" + "a" * 64 + "/webapp",  # a namespace is a 63-character label
        "Kustomization/apps/" + LONGEST + "b",  # a name is a 253-character DNS subdomain
        "Kustomization/apps/" + "b" * 64,  # of 63-character labels
        "HelmRelease/apps/web_app",
    ],
)
def test_other_names_are_not_flux_targets(name: str) -> None:
    assert parse_target(name) is None
    assert not is_flux_target(name)


def test_api_paths() -> None:
    assert FluxRef("Kustomization", "apps", "webapp").api_path() == (
        "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/apps/kustomizations/webapp"
    )
    assert FluxRef("HelmRelease", "apps", "podinfo").api_path() == (
        "/apis/helm.toolkit.fluxcd.io/v2/namespaces/apps/helmreleases/podinfo"
    )


def test_involved_objects_of_other_groups_or_kinds_are_not_followed() -> None:
    assert ref_of("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "apps", "web") is not None
    assert ref_of("kustomize.toolkit.fluxcd.io/v1beta2", "Kustomization", "apps", "web")
    assert ref_of("helm.toolkit.fluxcd.io/v2beta1", "HelmRelease", "apps", "web") is not None
    assert ref_of("source.toolkit.fluxcd.io/v1", "GitRepository", "apps", "web") is None
    assert ref_of("example.com/v1", "Kustomization", "apps", "web") is None
    assert ref_of("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "Apps", "web") is None


@pytest.mark.parametrize(
    ("revision", "sha"),
    [
        (f"main@sha1:{SHA}", SHA),  # Flux 2.0 and later
        (f"refs/heads/release/1.x@sha1:{SHA}", SHA),
        (f"v1.2.3@sha1:{SHA}", SHA),
        (f"sha1:{SHA}", SHA),
        (f"main/{SHA}", SHA),  # before Flux 2.0
        (f"release/1.x/{SHA}", SHA),
        (SHA, SHA),
        (f"main@sha256:{'a' * 64}", None),  # a SHA-256 repository, or an OCI digest
        (f"latest@sha256:{'a' * 64}", None),
        ("6.3.5", None),  # a HelmRelease's chart version
        (f"main@sha1:{SHA[:12]}", None),
        (f"main@sha1:{SHA.upper()}", None),
        ("", None),
    ],
)
def test_revisions(revision: str, sha: str | None) -> None:
    assert commit_of(revision) == sha


def test_event_commit_reads_stripped_and_grouped_keys() -> None:
    group = "kustomize.toolkit.fluxcd.io"
    assert event_commit({"revision": f"main@sha1:{SHA}"}, group) == SHA
    assert event_commit({f"{group}/revision": f"main/{SHA}"}, group) == SHA
    # An OCI source: the revision is a digest, the origin revision the commit.
    oci = {"revision": f"latest@sha256:{'b' * 64}", "originRevision": f"main@sha1:{SHA}"}
    assert event_commit(oci, group) == SHA
    # A HelmRelease: the chart version is no commit.
    helm = "helm.toolkit.fluxcd.io"
    assert event_commit({"revision": "6.3.5", "token": "abc"}, helm) is None
    assert event_commit({"revision": "6.3.5", "originRevision": f"main@sha1:{SHA}"}, helm) == SHA
    assert event_commit({}, group) is None
    assert event_commit({"other.group/revision": f"main@sha1:{SHA}"}, group) is None


@pytest.mark.parametrize(
    ("reason", "severity", "state"),
    [
        ("ReconciliationSucceeded", "info", DEPLOYED),
        ("InstallSucceeded", "info", DEPLOYED),
        ("UpgradeSucceeded", "info", DEPLOYED),
        ("TestSucceeded", "info", DEPLOYED),
        ("Progressing", "info", PROGRESSING),
        ("ProgressingWithRetry", "info", PROGRESSING),
        ("DependencyNotReady", "info", PROGRESSING),
        ("HealthCheckFailed", "error", UNHEALTHY),
        ("TestFailed", "error", UNHEALTHY),
        ("ReconciliationFailed", "error", FAILED),
        ("BuildFailed", "error", FAILED),
        ("UpgradeFailed", "error", FAILED),
        ("RollbackSucceeded", "info", FAILED),  # the revision did not stay
        ("UninstallSucceeded", "info", FAILED),
        ("ValidationFailed", "error", FAILED),  # any error about the revision
        ("ReconciliationSucceeded", "error", FAILED),
        ("Progressing", "trace", None),
        ("DriftDetected", "info", None),  # says nothing of the revision's health
        ("SomethingNew", "info", None),
    ],
)
def test_reasons_to_states(reason: str, severity: str, state: object) -> None:
    assert event_state(reason, severity) == state


def _c(kind: str, status: str, reason: str = "") -> Condition:
    return Condition(kind, status, reason)


@pytest.mark.parametrize(
    ("conditions", "current", "state"),
    [
        ([_c("Ready", "True", "ReconciliationSucceeded")], True, DEPLOYED),
        (
            [_c("Ready", "True", "ReconciliationSucceeded"), _c("Healthy", "True", "Succeeded")],
            True,
            DEPLOYED,
        ),
        ([_c("Ready", "True", "ReconciliationSucceeded")], False, PROGRESSING),  # new spec
        (
            [_c("Ready", "Unknown", "Progressing"), _c("Reconciling", "True", "Progressing")],
            True,
            PROGRESSING,
        ),
        ([_c("Ready", "False", "DependencyNotReady")], True, PROGRESSING),
        ([], True, PROGRESSING),
        (
            [_c("Ready", "False", "HealthCheckFailed"), _c("Healthy", "False", "Failed")],
            True,
            UNHEALTHY,
        ),
        (
            [
                _c("Ready", "False", "ReconciliationFailed"),
                _c("Reconciling", "True", "ProgressingWithRetry"),
            ],
            True,
            FAILED,
        ),
        ([_c("Stalled", "True", "BuildFailed"), _c("Ready", "False", "BuildFailed")], True, FAILED),
        ([_c("Ready", "False", "UpgradeFailed")], True, FAILED),
    ],
)
def test_conditions_to_states(conditions: list[Condition], current: bool, state: object) -> None:
    assert status_state(conditions, current) == state


def _with_targets(config: WavelineConfig, targets: list[str]) -> dict[str, object]:
    raw = config.model_dump(mode="json")
    raw["pipelines"]["app"]["waves"][0]["targets"] = targets
    return raw


def test_the_pipeline_file_takes_flux_targets_beside_argo_cd_apps() -> None:
    base = make_config("file:///tmp/cfg.git")
    mixed = ["staging-us", "Kustomization/apps/webapp", "HelmRelease/apps/podinfo"]
    config = WavelineConfig.model_validate(_with_targets(base, mixed))
    assert config.pipelines_of_target("Kustomization/apps/webapp") == [("app", "staging")]
    for bad in ["Kustomization/Apps/webapp", "GitRepository/a/b", "a/b", "staging us"]:
        with pytest.raises(ValidationError, match="targets"):
            WavelineConfig.model_validate(_with_targets(base, [bad]))


def test_deploy_reports_name_flux_targets() -> None:
    for app in ["staging-us", "Kustomization/apps/webapp", "HelmRelease/prod/podinfo.v2"]:
        assert DeployReported(
            event_id=uuid.uuid4(), app=app, revision=SHA, reported_at=utcnow()
        ).app
    for app in ["Kustomization/Apps/webapp", "GitRepository/a/b", "a/b/c", "/x"]:
        with pytest.raises(ValidationError):
            DeployReported(event_id=uuid.uuid4(), app=app, revision=SHA, reported_at=utcnow())
