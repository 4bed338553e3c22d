"""The Kubernetes manifests (deploy/k8s) keep every service probed, unprivileged, on a
read-only root filesystem, covered by a PodDisruptionBudget and fenced by NetworkPolicies.

``problems`` reads the manifests as ``kubectl apply -k`` would get them (the files the
kustomization lists) and names every breach; the tests then show it finds each kind of
breach when one is planted in a copy.
"""

from __future__ import annotations

import copy
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SERVICES = ("ingest", "git-writer", "status-tracker", "promoter", "notifier", "reconciler")
CONSUMERS = SERVICES[1:]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job"}
# What every Waveline pod may reach, by port: DNS, Kafka (plain and TLS listeners), PostgreSQL.
DNS, KAFKA, POSTGRES = 53, 9092, 5432
BASE_EGRESS = {53, 9092, 9093, 5432}
# Beyond that: the git-writer reaches git remotes, the notifier the forge and webhooks, the
# reconciler the forge and Argo CD's API server.
EXTRA_EGRESS = {"git-writer": {443, 22}, "notifier": {443}, "reconciler": {443, 8080}}
# Probes that check nothing: a shell builtin or a command that always succeeds.
_CONSTANT_COMMANDS = {"true", "/bin/true", "/usr/bin/true", ":", "exit", "echo", "sleep"}

Obj = dict[str, Any]


def load() -> list[Obj]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    objects: list[Obj] = []
    for resource in kustomization["resources"]:
        objects += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    return objects


def matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (an empty selector selects everything)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def workloads(objects: list[Obj]) -> Iterator[Obj]:
    yield from (o for o in objects if o["kind"] in WORKLOAD_KINDS)


def service_workloads(objects: list[Obj]) -> dict[str, Obj]:
    found: dict[str, Obj] = {}
    for workload in workloads(objects):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            args = container.get("args") or []
            if len(args) == 2 and args[0] == "run":
                found[args[1]] = workload
    return found


def _env(container: Obj) -> dict[str, str]:
    return {e["name"]: str(e.get("value", "")) for e in container.get("env") or []}


def _port(container: Obj, port: int | str) -> int | None:
    for declared in container.get("ports") or []:
        if port in (declared.get("name"), declared["containerPort"]):
            return int(declared["containerPort"])
    return None


def _listens_on(service: str, container: Obj) -> int | None:
    """The port the service's health endpoint listens on, as its env configures it."""
    env = _env(container)
    host_var, port_var = (
        ("WAVELINE_HTTP_HOST", "WAVELINE_HTTP_PORT")
        if service == "ingest"
        else ("WAVELINE_HEALTH_HOST", "WAVELINE_HEALTH_PORT")
    )
    if env.get(host_var) != "0.0.0.0" or not env.get(port_var, "").isdigit():
        return None
    return int(env[port_var])


def probe_problem(service: str, container: Obj, which: str, path: str) -> str | None:
    probe = container.get(which)
    if not probe:
        return f"{service}: no {which}"
    if "httpGet" in probe:
        get = probe["httpGet"]
        if get.get("path") != path:
            return f"{service}: {which} asks {get.get('path')!r}, the service answers {path}"
        port = _port(container, get.get("port", ""))
        if port is None or port != _listens_on(service, container):
            return f"{service}: {which} probes a port the service does not serve"
        return None
    if "exec" in probe:
        command = probe["exec"].get("command") or []
        words = shlex.split(" ".join(command)) if command else []
        if words[:2] in (["sh", "-c"], ["/bin/sh", "-c"]):
            words = shlex.split(" ".join(words[2:]))
        if not words or words[0] in _CONSTANT_COMMANDS:
            return f"{service}: {which} runs a constant ({' '.join(command)!r})"
        return None
    return f"{service}: {which} must ask the health endpoint (httpGet) or run a real check"


def security_problems(name: str, workload: Obj) -> list[str]:
    pod = workload["spec"]["template"]["spec"]
    pod_ctx = pod.get("securityContext") or {}
    found: list[str] = []
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates") or []}
    for container in pod["containers"] + (pod.get("initContainers") or []):
        ctx = {**pod_ctx, **(container.get("securityContext") or {})}
        if ctx.get("runAsNonRoot") is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if ctx.get("runAsUser") in (0, None):
            found.append(f"{name}: runs as root (runAsUser {ctx.get('runAsUser')})")
        if ctx.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: the root filesystem is writable")
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts") or []}
        # Where the service writes: /tmp always, the data directory when set.
        for path in ["/tmp", _env(container).get("WAVELINE_DATA_DIR")]:
            if not path:
                continue
            mount = mounts.get(path)
            writable = (
                mount is not None
                and not mount.get("readOnly")
                and ("emptyDir" in volumes.get(mount["name"], {}) or mount["name"] in claims)
            )
            if not writable:
                found.append(f"{name}: {path} is not a writable emptyDir or volume")
    return found


def pdb_problems(service: str, workload: Obj, objects: list[Obj]) -> list[str]:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    budgets = [
        o
        for o in objects
        if o["kind"] == "PodDisruptionBudget" and matches(o["spec"].get("selector"), labels)
    ]
    if len(budgets) != 1:
        return [f"{service}: {len(budgets)} PodDisruptionBudgets select it (want 1)"]
    spec = budgets[0]["spec"]
    replicas = int(workload["spec"].get("replicas", 1))
    if "minAvailable" in spec and int(spec["minAvailable"]) >= replicas:
        return [f"{service}: minAvailable {spec['minAvailable']} blocks every drain"]
    if "maxUnavailable" in spec and int(spec["maxUnavailable"]) < 1:
        return [f"{service}: maxUnavailable 0 blocks every drain"]
    return []


def _rules(policies: list[Obj], labels: dict[str, str], kind: str) -> list[Obj]:
    key = kind.lower()
    return [
        rule
        for p in policies
        if kind in p["spec"].get("policyTypes", []) and matches(p["spec"]["podSelector"], labels)
        for rule in p["spec"].get(key) or []
    ]


def _ports(rules: list[Obj]) -> set[int]:
    return {int(port["port"]) for rule in rules for port in rule.get("ports") or []}


def network_problems(service: str, workload: Obj, objects: list[Obj]) -> list[str]:
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    labels = workload["spec"]["template"]["metadata"]["labels"]
    found: list[str] = []
    deny = [
        p
        for p in policies
        if matches(p["spec"]["podSelector"], labels)
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny:
        found.append(f"{service}: no default-deny NetworkPolicy selects it")
    egress, ingress = _rules(policies, labels, "Egress"), _rules(policies, labels, "Ingress")
    if any(not rule.get("ports") for rule in egress):
        found.append(f"{service}: an egress rule opens every port")
    allowed = _ports(egress)
    for port, what in ((DNS, "DNS"), (KAFKA, "Kafka"), (POSTGRES, "PostgreSQL")):
        if port not in allowed:
            found.append(f"{service}: no egress to {what} (port {port})")
    extra = allowed - BASE_EGRESS - EXTRA_EGRESS.get(service, set())
    if extra:
        found.append(f"{service}: egress to ports {sorted(extra)} it does not need")
    for port in EXTRA_EGRESS.get(service, set()) - allowed:
        found.append(f"{service}: no egress on port {port}")
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    serves = _listens_on(service, container)
    if serves not in _ports(ingress):
        found.append(f"{service}: its port {serves} is not reachable (probes, clients)")
    if any(not rule.get("ports") for rule in ingress) or _ports(ingress) - {serves}:
        found.append(f"{service}: ingress is open beyond port {serves}")
    return found


def problems(objects: list[Obj]) -> list[str]:
    """Every breach of the rules above in ``objects``; empty when they hold."""
    found: list[str] = []
    by_service = service_workloads(objects)
    found += [f"{s}: no workload runs it" for s in SERVICES if s not in by_service]
    for service, workload in sorted(by_service.items()):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        for which, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            problem = probe_problem(service, container, which, path)
            found += [problem] if problem else []
        found += pdb_problems(service, workload, objects)
        found += network_problems(service, workload, objects)
    for workload in workloads(objects):
        found += security_problems(workload["metadata"]["name"], workload)
    return found


# -- the manifests as shipped -----------------------------------------------------------------


def test_the_manifests_have_no_problem() -> None:
    assert problems(load()) == []


def test_every_service_has_a_workload_a_budget_and_policies() -> None:
    objects = load()
    assert set(service_workloads(objects)) == set(SERVICES)
    kinds = {o["kind"] for o in objects}
    assert {"NetworkPolicy", "PodDisruptionBudget"} <= kinds


# -- each breach is found -------------------------------------------------------------------


def _workload(objects: list[Obj], service: str) -> Obj:
    return service_workloads(objects)[service]


def _container(objects: list[Obj], service: str) -> Obj:
    containers: list[Obj] = _workload(objects, service)["spec"]["template"]["spec"]["containers"]
    return containers[0]


def _drop_probe(o: list[Obj]) -> None:
    del _container(o, "promoter")["readinessProbe"]


def _constant_probe(o: list[Obj]) -> None:
    _container(o, "notifier")["livenessProbe"] = {"exec": {"command": ["true"]}}


def _shell_constant_probe(o: list[Obj]) -> None:
    _container(o, "ingest")["livenessProbe"] = {"exec": {"command": ["sh", "-c", "exit 0"]}}


def _probe_wrong_port(o: list[Obj]) -> None:
    _container(o, "git-writer")["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": 9999}}


def _health_port_unset(o: list[Obj]) -> None:
    container = _container(o, "status-tracker")
    container["env"] = [e for e in container["env"] if e["name"] != "WAVELINE_HEALTH_PORT"]


def _root(o: list[Obj]) -> None:
    _container(o, "ingest")["securityContext"]["runAsUser"] = 0


def _not_non_root(o: list[Obj]) -> None:
    _workload(o, "promoter")["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = False


def _writable_root(o: list[Obj]) -> None:
    del _container(o, "git-writer")["securityContext"]["readOnlyRootFilesystem"]


def _no_tmp(o: list[Obj]) -> None:
    container = _container(o, "notifier")
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["mountPath"] != "/tmp"]


def _init_job_as_root(o: list[Obj]) -> None:
    job = next(w for w in workloads(o) if w["kind"] == "Job")
    job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0


def _no_pdb(o: list[Obj]) -> None:
    o[:] = [
        x
        for x in o
        if x["metadata"]["name"] != "waveline-status-tracker" or x["kind"] != "PodDisruptionBudget"
    ]


def _blocking_pdb(o: list[Obj]) -> None:
    pdb = next(
        x for x in o if x["kind"] == "PodDisruptionBudget" and "notifier" in x["metadata"]["name"]
    )
    pdb["spec"] = {"minAvailable": 1, "selector": pdb["spec"]["selector"]}


def _no_policies(o: list[Obj]) -> None:
    o[:] = [x for x in o if x["kind"] != "NetworkPolicy"]


def _no_default_deny(o: list[Obj]) -> None:
    o[:] = [x for x in o if x["metadata"]["name"] != "waveline-default-deny"]


def _no_kafka(o: list[Obj]) -> None:
    o[:] = [x for x in o if x["metadata"]["name"] != "waveline-egress-kafka"]


def _egress_everywhere(o: list[Obj]) -> None:
    policy = next(x for x in o if x["metadata"]["name"] == "waveline-egress-forge")
    policy["spec"]["podSelector"] = {}
    policy["spec"]["egress"][0]["ports"].append({"protocol": "TCP", "port": 8443})


def _ingest_unreachable(o: list[Obj]) -> None:
    o[:] = [x for x in o if x["metadata"]["name"] != "waveline-ingress-ingest"]


def _consumers_open(o: list[Obj]) -> None:
    policy = next(x for x in o if x["metadata"]["name"] == "waveline-ingress-health")
    del policy["spec"]["ingress"][0]["ports"]


BREACHES: dict[str, tuple[Callable[[list[Obj]], None], str]] = {
    "a service without a readiness probe": (_drop_probe, "promoter: no readinessProbe"),
    "exec: true as liveness": (_constant_probe, "notifier: livenessProbe runs a constant"),
    "sh -c 'exit 0' as liveness": (_shell_constant_probe, "ingest: livenessProbe runs a constant"),
    "a probe on a port nobody serves": (_probe_wrong_port, "git-writer: readinessProbe probes"),
    "a health port the service does not open": (_health_port_unset, "status-tracker: liveness"),
    "runAsUser 0": (_root, "ingest: runs as root"),
    "runAsNonRoot false": (_not_non_root, "promoter: runAsNonRoot is not true"),
    "a writable root filesystem": (_writable_root, "git-writer: the root filesystem is writable"),
    "no writable /tmp": (_no_tmp, "notifier: /tmp is not a writable"),
    "the init Job as root": (_init_job_as_root, "waveline-init: runs as root"),
    "a service without a PDB": (_no_pdb, "status-tracker: 0 PodDisruptionBudgets"),
    "a PDB that blocks drains": (_blocking_pdb, "notifier: minAvailable 1 blocks every drain"),
    "no NetworkPolicy": (_no_policies, "no default-deny NetworkPolicy"),
    "no default deny": (_no_default_deny, "no default-deny NetworkPolicy"),
    "no way to Kafka": (_no_kafka, "no egress to Kafka"),
    "egress to another port for all": (_egress_everywhere, "promoter: egress to ports [443, 8443]"),
    "ingest unreachable": (_ingest_unreachable, "ingest: its port 8080 is not reachable"),
    "every port of the consumers open": (_consumers_open, "promoter: ingress is open beyond"),
}


@pytest.mark.parametrize("breach", sorted(BREACHES))
def test_a_planted_breach_is_found(breach: str) -> None:
    plant, expected = BREACHES[breach]
    objects = copy.deepcopy(load())
    plant(objects)
    found = problems(objects)
    assert any(expected in p for p in found), found
