"""Config validation: a bad file names the bad field and why; secrets come from the env."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from waveline.shared.config import Secrets, Settings, load_config, parse_duration
from waveline.shared.errors import ConfigError

GOOD = """
repos:
  cfg-app:
    url: https://git.example.com/org/cfg-app.git
    watched_branch: master
    auto_branch: auto
    token_env: WAVELINE_GIT_TOKEN
    author: {name: waveline, email: waveline@example.com}
    required_checks: [ci/validate]
pipelines:
  app:
    repo: cfg-app
    layout: {kind: images-json, path: "images/{wave}"}
    strategy: {kind: commit}
    waves:
      - {name: staging,    targets: [staging-us, staging-eu]}
      - {name: internal,   targets: [internal-us], gate: {bake: 10m}}
      - {name: production, targets: [prod-us, prod-eu], gate: {approval: true}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "waveline.yaml"
    path.write_text(text)
    return path


def test_design_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    pipeline = config.pipelines["app"]
    assert [w.name for w in pipeline.waves] == ["staging", "internal", "production"]
    assert pipeline.waves[1].gate.bake == timedelta(minutes=10)
    assert pipeline.waves[2].gate.approval is True
    assert config.repos["cfg-app"].required_check_names() == ("ci/validate",)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("targets: [internal-us]", "targets: []", "pipelines.app.waves.1.targets"),
        ("bake: 10m", "bake: ten minutes", "pipelines.app.waves.1.gate.bake"),
        ('path: "images/{wave}"', 'path: "../../etc/{wave}"', "pipelines.app.layout.path"),
        ("kind: images-json", "kind: helm", "pipelines.app.layout.kind"),
        ("repo: cfg-app\n", "repo: other\n", "pipelines.app"),
        ("url: https://git.example.com/org/cfg-app.git", "url: ftp://x", "repos.cfg-app.url"),
        ("watched_branch: master", "watched_branch: ../x", "repos.cfg-app.watched_branch"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, old: str, new: str, where: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace(old, new, 1)))
    message = str(info.value)
    assert where in message
    assert str(tmp_path / "waveline.yaml") in message


def test_duplicate_wave_names(tmp_path: Path) -> None:
    text = GOOD.replace("name: internal", "name: staging")
    with pytest.raises(ConfigError, match="wave names must be unique"):
        load_config(write(tmp_path, text))


def test_unknown_key_and_not_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pipelines\.app\.colour"):
        load_config(
            write(
                tmp_path,
                GOOD.replace("    repo: cfg-app\n", "    repo: cfg-app\n    colour: red\n"),
            )
        )
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "repos: [unclosed"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1h30m") == timedelta(hours=1, minutes=30)
    assert parse_duration(15) == timedelta(seconds=15)
    for bad in ("", "10x", "m", "-5s"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)


def test_secrets_come_from_named_env_vars(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD + "auth: {ci_token_env: MY_CI}\n"))
    secrets = Secrets.from_env(
        config.auth, {"MY_CI": "s3cret-value", "WAVELINE_OPERATOR_TOKEN": ""}
    )
    assert secrets.ci_token is not None
    assert secrets.ci_token.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(secrets)
    assert secrets.operator_token is None


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVELINE_HTTP_PORT", "9999")
    monkeypatch.setenv("WAVELINE_DATABASE_URL", "postgresql://u:pw-xyz@h/db")
    settings = Settings()
    assert settings.http_port == 9999
    assert "pw-xyz" not in repr(settings)


def test_service_refuses_to_start_on_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("bake: 10m", "bake: soon"))
    env = {**os.environ, "WAVELINE_CONFIG": str(path)}
    proc = subprocess.run(
        [sys.executable, "-m", "waveline", "run", "promoter"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "pipelines.app.waves.1.gate.bake" in proc.stderr
    assert "invalid duration" in proc.stderr
