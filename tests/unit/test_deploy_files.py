"""Static checks of the deployment files: docker-compose.yml and everything under deploy/.

They need no Docker engine, cluster or network, so a broken manifest fails `make test` on any
machine instead of at the first `docker compose up` or `kubectl apply`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
SERVICES = ("ingest", "git-writer", "status-tracker", "promoter", "notifier", "reconciler")
ARGOCD_TRIGGERS = ("on-deployed", "on-sync-failed", "on-health-degraded")
WEBHOOK_KEYS = {"app", "revision", "phase", "health", "sync"}
SECRET_ENV = (
    "WAVELINE_CI_TOKEN",
    "WAVELINE_GITHUB_WEBHOOK_SECRET",
    "WAVELINE_ARGOCD_TOKEN",
    "WAVELINE_OPERATOR_TOKEN",
    "WAVELINE_GIT_TOKEN",
)

DEPLOY_YAML = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})
K8S_YAML = sorted((DEPLOY / "k8s").glob("*.yaml")) + sorted((DEPLOY / "argocd").glob("*.yaml"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _load_all(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def _k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in K8S_YAML for doc in _load_all(path)]


def _k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in _k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _load(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_runs_the_five_services_from_one_build(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    builds = set()
    for name in SERVICES:
        svc = compose_services[name]
        assert svc["command"] == ["run", name]
        build = svc["build"]
        context = build if isinstance(build, str) else build["context"]
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        builds.add((context, dockerfile, svc["image"]))
    assert builds == {(".", "Dockerfile", "waveline:local")}
    assert (ROOT / "Dockerfile").is_file()


def test_dockerfile_is_one_non_root_image_with_waveline_entrypoint() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM\s+\$\{PYTHON_IMAGE\}", text, re.M)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert re.search(r'^ENTRYPOINT \["waveline"\]$', text, re.M)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user, "the runtime stage must switch to a non-root user"
    assert not user[-1].startswith(("root", "0")), user[-1]
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".venv", ".run", ".cache", ".git"):
        assert entry in ignored
    assert any("__pycache__" in entry for entry in ignored)


def test_compose_kafka_is_single_node_kraft(compose_services: dict[str, dict[str, Any]]) -> None:
    assert not [name for name in compose_services if "zookeeper" in name.lower()]
    kafka = compose_services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert not [key for key in env if "ZOOKEEPER" in key]
    assert "healthcheck" in kafka


def test_compose_postgres_15_with_healthcheck(compose_services: dict[str, dict[str, Any]]) -> None:
    postgres = compose_services["postgres"]
    assert postgres["image"].split(":")[1].startswith("15")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_compose_ingest_published_on_loopback_only(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    assert compose_services["ingest"]["ports"] == ["127.0.0.1:8080:8080"]
    assert compose_services["ingest"]["environment"]["WAVELINE_HTTP_HOST"] == "0.0.0.0"
    published = [name for name, svc in compose_services.items() if svc.get("ports")]
    assert published == ["ingest"], "only ingest should be reachable from the host"


def test_compose_init_runs_migrate_then_topics_after_infra_is_healthy(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    init = compose_services["init"]
    script = " ".join([*init.get("entrypoint", []), *init["command"]])
    assert re.search(r"waveline migrate\s*&&\s*waveline topics", script)
    assert init["restart"] == "no"
    assert init["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }


def test_compose_services_start_after_init_succeeded(
    compose_services: dict[str, dict[str, Any]],
) -> None:
    for name in SERVICES:
        depends = compose_services[name]["depends_on"]
        assert depends["init"] == {"condition": "service_completed_successfully"}, name


def test_compose_git_writer_keeps_clones_on_named_volume(
    compose: dict[str, Any], compose_services: dict[str, dict[str, Any]]
) -> None:
    writer = compose_services["git-writer"]
    data_dir = writer["environment"]["WAVELINE_DATA_DIR"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in writer["volumes"]}
    assert mounts[data_dir] in compose["volumes"], "data dir must be a named volume"


def test_compose_demo_repo_is_seeded_where_the_example_config_points(
    compose: dict[str, Any], compose_services: dict[str, dict[str, Any]]
) -> None:
    # seed-repo calls the same seed as `make up`; if that function moves, compose must follow.
    seed = compose_services["seed-repo"]
    assert "from waveline.devstack.demo import seed_repo" in " ".join(seed["entrypoint"])
    demo = (ROOT / "waveline" / "devstack" / "demo.py").read_text(encoding="utf-8")
    assert re.search(r"^def seed_repo\(bare: Path\)", demo, re.M)

    bare = seed["command"][0]
    config = _load(DEPLOY / "config" / "waveline.yaml")
    assert config["repos"]["cfg-app"]["url"] == f"file://{bare}"
    seed_volumes = {v.split(":")[0] for v in seed["volumes"] if bare.startswith(v.split(":")[1])}
    writer = compose_services["git-writer"]
    assert seed_volumes & {v.split(":")[0] for v in writer["volumes"]}, "writer must see the repo"
    assert seed_volumes <= compose["volumes"].keys()
    assert writer["depends_on"]["seed-repo"] == {"condition": "service_completed_successfully"}


def test_compose_mounts_the_example_config(compose_services: dict[str, dict[str, Any]]) -> None:
    for name in SERVICES:
        svc = compose_services[name]
        config_path = svc["environment"]["WAVELINE_CONFIG"]
        assert f"./deploy/config/waveline.yaml:{config_path}:ro" in svc["volumes"], name


def test_compose_secrets_come_from_host_env() -> None:
    # Raw text, because YAML loading does not interpolate: every secret must be a ${VAR...}
    # reference so a real value can be supplied without editing the file.
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for var in SECRET_ENV:
        values = re.findall(rf"^\s*{var}:\s*(.+)$", text, re.M)
        assert values, var
        for value in values:
            assert re.fullmatch(rf"\$\{{{var}(:?[-?][^}}]*)?\}}", value.strip()), (var, value)


# --- deploy/ ---------------------------------------------------------------------------------


def test_deploy_has_yaml_files() -> None:
    assert len(DEPLOY_YAML) >= 5


@pytest.mark.parametrize("path", DEPLOY_YAML, ids=_rel)
def test_deploy_yaml_parses(path: Path) -> None:
    assert _load_all(path), f"{_rel(path)} has no YAML documents"


@pytest.mark.parametrize("path", K8S_YAML, ids=_rel)
def test_k8s_manifests_have_api_version_kind_and_name(path: Path) -> None:
    for doc in _load_all(path):
        assert isinstance(doc, dict), _rel(path)
        assert doc.get("apiVersion"), _rel(path)
        assert doc.get("kind"), _rel(path)
        assert doc.get("metadata", {}).get("name"), _rel(path)


def test_k8s_has_a_workload_for_each_service() -> None:
    workloads = [o for o in _k8s_objects() if o["kind"] in {"Deployment", "StatefulSet"}]
    commands = set()
    for workload in workloads:
        for container in workload["spec"]["template"]["spec"]["containers"]:
            commands.add(tuple(container.get("args", [])))
    for name in SERVICES:
        assert ("run", name) in commands, name


def test_k8s_git_writer_has_persistent_data_dir() -> None:
    writer = _k8s_object("StatefulSet", "waveline-git-writer")
    claims = {c["metadata"]["name"] for c in writer["spec"]["volumeClaimTemplates"]}
    container = writer["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[env["WAVELINE_DATA_DIR"]] in claims


def test_k8s_init_job_runs_migrate_and_topics() -> None:
    job = _k8s_object("Job", "waveline-init")
    command = " ".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert re.search(r"waveline migrate\s*&&\s*waveline topics", command)


def test_k8s_ingest_service_matches_argocd_webhook_url() -> None:
    service = _k8s_object("Service", "waveline-ingest")
    assert service["metadata"]["namespace"] == "waveline"
    assert {p["port"] for p in service["spec"]["ports"]} == {8080}


@pytest.mark.parametrize(
    "path",
    [
        DEPLOY / "k8s" / "secret.example.yaml",
        DEPLOY / "argocd" / "argocd-notifications-secret.example.yaml",
    ],
    ids=_rel,
)
def test_secret_templates_hold_only_placeholders(path: Path) -> None:
    for doc in _load_all(path):
        assert doc["kind"] == "Secret"
        assert "data" not in doc
        for key, value in doc["stringData"].items():
            assert "REPLACE_ME" in value, key


def test_secret_template_is_not_in_kustomization() -> None:
    kustomization = _load(DEPLOY / "k8s" / "kustomization.yaml")
    assert "secret.example.yaml" not in kustomization["resources"]
    for resource in kustomization["resources"]:
        assert (DEPLOY / "k8s" / resource).is_file(), resource


# --- Argo CD notifications ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def argocd_cm() -> dict[str, Any]:
    return _k8s_object("ConfigMap", "argocd-notifications-cm")


def test_argocd_webhook_service_posts_to_ingest(argocd_cm: dict[str, Any]) -> None:
    service = yaml.safe_load(argocd_cm["data"]["service.webhook.waveline"])
    assert service["url"] == "http://waveline-ingest.waveline.svc:8080/v1/webhooks/argocd"
    headers = {h["name"]: h["value"] for h in service["headers"]}
    assert headers["Authorization"] == "Bearer $waveline-argocd-token"
    assert headers["Content-Type"] == "application/json"


def test_argocd_triggers_send_the_waveline_template(argocd_cm: dict[str, Any]) -> None:
    templates = {
        k.removeprefix("template.") for k in argocd_cm["data"] if k.startswith("template.")
    }
    for trigger in ARGOCD_TRIGGERS:
        conditions = yaml.safe_load(argocd_cm["data"][f"trigger.{trigger}"])
        assert conditions, trigger
        for condition in conditions:
            assert condition["when"], trigger
            assert set(condition["send"]) <= templates, trigger
    deployed = yaml.safe_load(argocd_cm["data"]["trigger.on-deployed"])[0]
    assert "Succeeded" in deployed["when"]
    assert "Healthy" in deployed["when"]
    assert "revision" in deployed["oncePer"]


def test_argocd_template_body_has_the_ingest_fields(argocd_cm: dict[str, Any]) -> None:
    for key, value in argocd_cm["data"].items():
        if not key.startswith("template."):
            continue
        body = yaml.safe_load(value)["webhook"]["waveline"]["body"]
        # Go template placeholders are inside JSON strings, so the body is JSON as written.
        assert set(json.loads(body)) == WEBHOOK_KEYS
        assert "{{.app.metadata.name}}" in body
        assert "{{.app.status.sync.revision}}" in body


def test_argocd_application_example_subscribes_to_the_triggers() -> None:
    app = _k8s_object("Application", "staging-us")
    annotations = app["metadata"]["annotations"]
    for trigger in ARGOCD_TRIGGERS:
        assert f"notifications.argoproj.io/subscribe.{trigger}.waveline" in annotations


# --- example config ---------------------------------------------------------------------------


def _check_config(config: dict[str, Any]) -> None:
    assert config["repos"], "no repos"
    assert config["pipelines"], "no pipelines"
    for name, pipeline in config["pipelines"].items():
        assert pipeline["repo"] in config["repos"], name
        assert pipeline["layout"]["kind"] in {"images-json", "tag-file", "yaml-path", "kustomize"}
        waves = pipeline["waves"]
        assert waves, name
        for wave in waves:
            assert wave["name"], name
            assert wave["targets"], (name, wave["name"])
        assert len({w["name"] for w in waves}) == len(waves), "duplicate wave names"


def test_example_config_has_repos_and_pipelines_with_waves() -> None:
    config = _load(DEPLOY / "config" / "waveline.yaml")
    _check_config(config)
    for repo in config["repos"].values():
        assert repo["url"]
        assert "token" not in repo, "secrets are named by token_env, never inlined"


def test_k8s_config_map_carries_the_same_pipelines() -> None:
    example = _load(DEPLOY / "config" / "waveline.yaml")
    embedded = yaml.safe_load(_k8s_object("ConfigMap", "waveline-config")["data"]["waveline.yaml"])
    _check_config(embedded)
    # Only repo URLs may differ (file:// demo remote vs a real one).
    assert embedded["pipelines"] == example["pipelines"]
    assert embedded["repos"].keys() == example["repos"].keys()


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("StatefulSet", "waveline-git-writer"),
        ("Deployment", "waveline-promoter"),
        ("Deployment", "waveline-status-tracker"),
        ("Deployment", "waveline-notifier"),
    ],
)
def test_k8s_consumers_serve_health_and_are_probed(kind: str, name: str) -> None:
    (container,) = _k8s_object(kind, name)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(env["WAVELINE_HEALTH_PORT"]) == ports["health"]
    assert env["WAVELINE_HEALTH_HOST"] == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
