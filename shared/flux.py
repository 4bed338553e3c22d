"""Flux targets as pure rules (docs/flux.md): target names, revisions, and what an event of
Flux's notification-controller or an object's status says about a deployment.

A wave target ``Kustomization/<namespace>/<name>`` or ``HelmRelease/<namespace>/<name>`` is
a Flux object; any other target is an Argo CD Application. A report counts like an Argo CD
one: ``(phase, health, sync)`` with the same words (``Synced`` + ``Healthy`` is deployed;
``Degraded`` or phase ``Failed`` is failing), about a 40-hex commit of the config repo.
No I/O here: the ingest endpoint (services/ingest/flux.py) and the Kubernetes API reader
(shared/flux_api.py) are the adapters around these rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

from waveline.shared.names import check_name

FluxKind = Literal["Kustomization", "HelmRelease"]

# The API group and the version Waveline reads of each kind (Flux v2's GA APIs).
GROUPS: dict[str, str] = {
    "Kustomization": "kustomize.toolkit.fluxcd.io",
    "HelmRelease": "helm.toolkit.fluxcd.io",
}
VERSIONS: dict[FluxKind, str] = {"Kustomization": "v1", "HelmRelease": "v2"}
PLURALS: dict[FluxKind, str] = {"Kustomization": "kustomizations", "HelmRelease": "helmreleases"}

# Kubernetes names: a namespace is a DNS label (RFC 1123, 63 characters), an object's name
# a DNS subdomain (253 characters).
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SUBDOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
TARGET_PATTERN = rf"^(Kustomization|HelmRelease)/({_LABEL})/({_SUBDOMAIN})$"
_TARGET = re.compile(TARGET_PATTERN)
_MAX_NAME = 253

# How Flux writes a source revision: ``main@sha1:<sha>`` (Flux 2.0 and later, also with a
# tag or ``refs/…`` before the ``@``, or none), ``main/<sha>`` (earlier), a bare sha.
# ``sha256:`` revisions (OCI digests, SHA-256 git repositories) are no commit Waveline
# writes: they do not match.
_SHA1_REVISION = re.compile(r"^(?:[^@]*@)?sha1:([a-f0-9]{40})$")
_LEGACY_REVISION = re.compile(r"^(?:.+/)?([a-f0-9]{40})$")


@dataclass(frozen=True)
class FluxRef:
    """One Flux object: what a target names."""

    kind: FluxKind
    namespace: str
    name: str

    @property
    def target(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @property
    def group(self) -> str:
        return GROUPS[self.kind]

    def api_path(self) -> str:
        """The object's path on the Kubernetes API server."""
        kind = self.kind
        return (
            f"/apis/{GROUPS[kind]}/{VERSIONS[kind]}/namespaces/{self.namespace}"
            f"/{PLURALS[kind]}/{self.name}"
        )


def is_flux_target(name: str) -> bool:
    """Whether the wave target ``name`` names a Flux object (else: an Argo CD app)."""
    return parse_target(name) is not None


def parse_target(name: str) -> FluxRef | None:
    """The Flux object ``name`` names, or None when it is not a Flux target name."""
    match = _TARGET.fullmatch(name)
    if match is None or len(match.group(3)) > _MAX_NAME:
        return None
    kind, namespace, obj = match.groups()
    return FluxRef("Kustomization" if kind == "Kustomization" else "HelmRelease", namespace, obj)


def check_flux_target(name: str) -> str:
    """``name`` when it is a valid Flux target name; ValueError saying why otherwise."""
    if parse_target(name) is None:
        raise ValueError(
            f"invalid Flux target {name!r}: Kustomization/<namespace>/<name> or"
            " HelmRelease/<namespace>/<name>, in lower-case Kubernetes names"
        )
    return name


def check_target(name: str) -> str:
    """``name`` when it is a valid wave target: an Argo CD Application's name (as any
    Waveline name) or a Flux target name; ValueError saying why otherwise."""
    if "/" in name:
        return check_flux_target(name)
    return check_name(name, "target (an Argo CD application, or Kustomization/<ns>/<name>)")


# A wave's target in the pipeline file.
TargetName = Annotated[str, AfterValidator(check_target)]


def ref_of(api_version: str, kind: str, namespace: str, name: str) -> FluxRef | None:
    """The object an event's ``involvedObject`` names, when it is a kind Waveline follows
    (in its own API group; any version) and its names are valid Kubernetes names."""
    group = api_version.partition("/")[0]
    if group != GROUPS.get(kind):
        return None
    return parse_target(f"{kind}/{namespace}/{name}")


def commit_of(revision: str) -> str | None:
    """The git commit (40 lower-case hex) in a Flux revision, None when it names none."""
    match = _SHA1_REVISION.fullmatch(revision) or _LEGACY_REVISION.fullmatch(revision)
    return match.group(1) if match else None


# Where an event carries the source revision. The notification-controller strips the
# involved object's group from its metadata keys before forwarding (Flux 2.2 and later);
# earlier ones forward them as the controller wrote them. ``originRevision`` is the commit
# an OCI artifact was built from, ``commit`` a git commit.
_REVISION_KEYS = ("revision", "originRevision", "commit")


def event_commit(metadata: Mapping[str, str], group: str) -> str | None:
    """The config-repo commit an event is about: the first of ``revision``,
    ``originRevision`` and ``commit`` (each also under ``<group>/``) that names a git
    commit. A HelmRelease's ``revision`` is a chart version: only ``originRevision`` or
    ``commit`` can name its commit."""
    for key in _REVISION_KEYS:
        for name in (key, f"{group}/{key}"):
            value = metadata.get(name)
            if value is not None and (sha := commit_of(value)) is not None:
                return sha
    return None


@dataclass(frozen=True)
class DeployState:
    """A report's words, as Argo CD's: what the status-tracker's wave rules read."""

    phase: str
    health: str
    sync: str


DEPLOYED = DeployState("Succeeded", "Healthy", "Synced")
PROGRESSING = DeployState("Running", "Progressing", "OutOfSync")
FAILED = DeployState("Failed", "Degraded", "OutOfSync")
# Applied but failing its health checks (or its Helm tests).
UNHEALTHY = DeployState("Failed", "Degraded", "Synced")

# The reasons of Flux's events (the Ready condition's reason for a Kustomization; the
# Helm action's for a HelmRelease).
SUCCEEDED_REASONS = frozenset(
    {"ReconciliationSucceeded", "InstallSucceeded", "UpgradeSucceeded", "TestSucceeded"}
)
PROGRESSING_REASONS = frozenset({"Progressing", "ProgressingWithRetry", "DependencyNotReady"})
UNHEALTHY_REASONS = frozenset({"HealthCheckFailed", "TestFailed"})
# A rollback or uninstall that succeeded still means the revision did not deploy.
FAILED_REASONS = frozenset(
    {
        "ReconciliationFailed",
        "BuildFailed",
        "PruneFailed",
        "ArtifactFailed",
        "InstallFailed",
        "UpgradeFailed",
        "RollbackSucceeded",
        "RollbackFailed",
        "UninstallSucceeded",
        "UninstallFailed",
    }
)


def event_state(reason: str, severity: str) -> DeployState | None:
    """What an event with ``reason`` and ``severity`` says of its revision; None for an
    event that says nothing about it (trace events, and info events of other reasons, e.g.
    a change set or drift detection, which must not take a deployed target back)."""
    if severity == "trace":
        return None
    if reason in SUCCEEDED_REASONS and severity == "info":
        return DEPLOYED
    if reason in UNHEALTHY_REASONS:
        return UNHEALTHY
    if reason in FAILED_REASONS or severity == "error":
        return FAILED
    if reason in PROGRESSING_REASONS:
        return PROGRESSING
    return None


@dataclass(frozen=True)
class Condition:
    """One entry of a Flux object's ``status.conditions``."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str = ""


def status_state(conditions: Iterable[Condition], generation_current: bool) -> DeployState:
    """What an object's conditions say of its last applied revision (kstatus rules, as
    Flux writes them): ``Stalled`` or ``Ready=False`` with a failure reason is failing;
    ``Reconciling``, an observed generation behind the spec's, ``Ready`` unknown or
    missing is progressing; ``Ready=True`` (and ``Healthy`` not False) is deployed."""
    by_type = {c.type: c for c in conditions}
    ready = by_type.get("Ready")
    if _is(by_type.get("Stalled"), "True"):
        return FAILED
    if ready is not None and ready.status == "False" and ready.reason not in PROGRESSING_REASONS:
        if _is(by_type.get("Healthy"), "False") or ready.reason in UNHEALTHY_REASONS:
            return UNHEALTHY
        return FAILED
    if not generation_current or _is(by_type.get("Reconciling"), "True"):
        return PROGRESSING
    if _is(ready, "True") and not _is(by_type.get("Healthy"), "False"):
        return DEPLOYED
    return PROGRESSING


def _is(condition: Condition | None, status: str) -> bool:
    return condition is not None and condition.status == status


# Labels kustomize-controller sets on every object it applies: the Kustomization it came from.
_PARENT_NAME = "kustomize.toolkit.fluxcd.io/name"
_PARENT_NAMESPACE = "kustomize.toolkit.fluxcd.io/namespace"


def _dig(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def object_state(obj: Any) -> DeployState:
    """What a Flux object (as the Kubernetes API returns it) says of its latest attempt:
    its conditions, and whether its controller has seen its current spec."""
    generation = _dig(obj, "metadata", "generation")
    observed = _dig(obj, "status", "observedGeneration")
    current = not isinstance(generation, int) or observed == generation
    raw = _dig(obj, "status", "conditions")
    conditions = [
        Condition(str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", "")))
        for c in (raw if isinstance(raw, list) else [])
        if isinstance(c, dict)
    ]
    return status_state(conditions, current)


def kustomization_commit(obj: Any, *, attempted: bool) -> str | None:
    """The config-repo commit of a Kustomization: of its latest attempt (what its
    conditions are about) when ``attempted``, else the one it last applied; from the
    revision, or from the origin revision of an OCI source."""
    applied = _dig(obj, "status", "lastAppliedRevision")
    revision = _dig(obj, "status", "lastAttemptedRevision") if attempted else applied
    if isinstance(revision, str) and (sha := commit_of(revision)) is not None:
        return sha
    origin = _dig(obj, "status", "lastAppliedOriginRevision")
    if revision == applied and isinstance(origin, str):
        return commit_of(origin)
    return None


def parent_of(obj: Any) -> FluxRef | None:
    """The Kustomization that applied ``obj`` (its kustomize-controller labels)."""
    labels = _dig(obj, "metadata", "labels")
    if not isinstance(labels, dict):
        return None
    name, namespace = labels.get(_PARENT_NAME), labels.get(_PARENT_NAMESPACE)
    if not isinstance(name, str) or not isinstance(namespace, str):
        return None
    return parse_target(f"Kustomization/{namespace}/{name}")
