"""The deployment files ask for the replication the docs promise: 3/2 in deploy/k8s, 1/1 on
docker compose's single broker, in variables the settings read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from waveline.shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
FACTOR = "WAVELINE_TOPIC_REPLICATION_FACTOR"
INSYNC = "WAVELINE_TOPIC_MIN_INSYNC_REPLICAS"


def k8s_env() -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "configmap.yaml").read_text())
    (env,) = [d for d in docs if d and d["metadata"]["name"] == "waveline-env"]
    data: dict[str, Any] = env["data"]
    return data


def test_k8s_asks_for_three_replicas_two_in_sync() -> None:
    env = k8s_env()
    settings = Settings(topic_replication_factor=env[FACTOR], topic_min_insync_replicas=env[INSYNC])
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)


def test_compose_defaults_fit_its_single_broker() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["x-waveline-env"]
    defaults = {}
    for name in (FACTOR, INSYNC):
        match = re.fullmatch(r"\$\{(\w+):-(\d+)\}", str(env[name]))
        assert match is not None and match.group(1) == name, env[name]
        defaults[name] = int(match.group(2))
    assert defaults == {FACTOR: 1, INSYNC: 1}
    assert compose["services"]["init"]["environment"] == env
    assert "waveline topics" in " ".join(compose["services"]["init"]["command"])
    # The single broker really is one node.
    assert compose["services"]["kafka"]["environment"]["KAFKA_NODE_ID"] == 1


def test_the_settings_read_those_variables() -> None:
    fields = {f"WAVELINE_{name.upper()}" for name in Settings.model_fields}
    assert {FACTOR, INSYNC} <= fields
