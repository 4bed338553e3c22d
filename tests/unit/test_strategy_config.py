"""Promotion strategies, notifications and delivery rules in the config file: a bad one names
its field and why; the environment variables the file names for secrets are all listed and
nothing else is read."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from waveline.shared.config import (
    AuthConfig,
    DeliveryConfig,
    Secrets,
    StrategyConfig,
    WavelineConfig,
    load_config,
)
from waveline.shared.errors import ConfigError

BASE: dict[str, Any] = {
    "repos": {"cfg-app": {"url": "https://git.example.com/org/cfg-app.git"}},
    "pipelines": {
        "app": {
            "repo": "cfg-app",
            "waves": [
                {"name": "staging", "targets": ["staging-us"]},
                {"name": "internal", "targets": ["internal-us"]},
                {"name": "production", "targets": ["prod-us"]},
            ],
        }
    },
}


def doc(**changes: Any) -> dict[str, Any]:
    """A copy of ``BASE``; ``pipeline``/``production``/``repo`` keys update those parts."""
    d = copy.deepcopy(BASE)
    d["pipelines"]["app"].update(changes.pop("pipeline", {}))
    d["pipelines"]["app"]["waves"][2].update(changes.pop("production", {}))
    d["repos"]["cfg-app"].update(changes.pop("repo", {}))
    d.update(changes)
    return d


def refused(d: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        WavelineConfig.model_validate(d)
    return str(info.value)


def load(tmp_path: Path, d: dict[str, Any]) -> WavelineConfig:
    path = tmp_path / "waveline.yaml"
    path.write_text(yaml.safe_dump(d))
    return load_config(path)


# -- pull-request -----------------------------------------------------------------------


def test_pull_request_wave_needs_the_repos_forge(tmp_path: Path) -> None:
    bad = doc(production={"strategy": {"kind": "pull-request"}})
    want = "pipelines.app.waves.production.strategy: pull-request needs repos.cfg-app.forge"
    assert want in refused(bad)
    with pytest.raises(ConfigError, match=r"pull-request needs repos\.cfg-app\.forge"):
        load(tmp_path, bad)
    good = doc(
        production={"strategy": {"kind": "pull-request"}},
        repo={"forge": {"kind": "github", "token_env": "GH_TOKEN"}},
    )
    assert load(tmp_path, good).pipelines["app"].strategy_of("production").kind == "pull-request"


def test_pull_request_pipeline_needs_the_repos_forge() -> None:
    message = refused(doc(pipeline={"strategy": {"kind": "pull-request"}}))
    assert "pipelines.app.strategy: pull-request needs repos.cfg-app.forge" in message


# -- webhook -------------------------------------------------------------------------------


def test_webhook_needs_url_or_secret_env() -> None:
    message = refused(doc(production={"strategy": {"kind": "webhook"}}))
    assert "pipelines.app.waves.production.strategy: webhook needs url or secret_env" in message
    message = refused(doc(pipeline={"strategy": {"kind": "webhook", "headers": {"X-A": "b"}}}))
    assert "pipelines.app.strategy: webhook needs url or secret_env" in message
    for strategy in (
        {"kind": "webhook", "url": "https://deploy.example.com/hook"},
        {"kind": "webhook", "secret_env": "PROMOTION_HOOK"},
    ):
        config = WavelineConfig.model_validate(doc(production={"strategy": strategy}))
        assert config.pipelines["app"].strategy_of("production").kind == "webhook"


def test_webhook_url_must_be_http() -> None:
    message = refused(doc(production={"strategy": {"kind": "webhook", "url": "ftp://x/hook"}}))
    assert "pipelines.app.waves.2.strategy.url" in message
    assert "http:// or https://" in message


def test_unknown_strategy_kind_and_keys_are_refused() -> None:
    assert "pipelines.app.waves.2.strategy.kind" in refused(
        doc(production={"strategy": {"kind": "carrier-pigeon"}})
    )
    assert "pipelines.app.strategy.adress" in refused(
        doc(pipeline={"strategy": {"kind": "webhook", "adress": "https://x"}})
    )


# -- wave overrides ----------------------------------------------------------------------------


def test_a_wave_overrides_the_pipelines_strategy() -> None:
    config = WavelineConfig.model_validate(
        doc(
            pipeline={"strategy": {"kind": "webhook", "url": "https://deploy.example.com/all"}},
            production={"strategy": {"kind": "webhook", "secret_env": "PROD_HOOK"}},
        )
    )
    pipeline = config.pipelines["app"]
    assert pipeline.strategy_of("staging").url == "https://deploy.example.com/all"
    assert pipeline.strategy_of("production").secret_env == "PROD_HOOK"
    assert pipeline.strategy_of("production").url is None
    # An unknown wave has the pipeline's.
    assert pipeline.strategy_of("nowhere") == pipeline.strategy


def test_the_default_strategy_is_commit() -> None:
    pipeline = WavelineConfig.model_validate(doc()).pipelines["app"]
    assert {pipeline.strategy_of(w.name).kind for w in pipeline.waves} == {"commit"}


# -- branch templates ------------------------------------------------------------------------


def test_branch_template_default_and_custom() -> None:
    assert StrategyConfig().branch_for("app", "production") == "waveline/app/production"
    custom = StrategyConfig(kind="pull-request", branch="promote/{pipeline}-{wave}")
    assert custom.branch_for("app", "internal") == "promote/app-internal"
    assert StrategyConfig(branch="{pipeline}-{wave}").branch_for("x", "prod") == "x-prod"


@pytest.mark.parametrize(
    ("branch", "why"),
    [
        ("waveline/{pipeline}", "must contain {pipeline} and {wave}"),
        ("promote", "must contain {pipeline} and {wave}"),
        # Two pipelines with a wave of that name would share (and fight over) one branch.
        ("release-{wave}", "must contain {pipeline} and {wave}"),
        ("bad..{wave}", "invalid branch template"),
        ("-{wave}", "invalid branch template"),
        ("with space/{wave}", "invalid branch template"),
        ("{wave}~1", "invalid branch template"),
        ("", "invalid branch template"),
    ],
)
def test_bad_branch_template_is_refused(branch: str, why: str) -> None:
    message = refused(
        doc(
            production={"strategy": {"kind": "pull-request", "branch": branch}},
            repo={"forge": {"kind": "github"}},
        )
    )
    assert "pipelines.app.waves.2.strategy.branch" in message
    assert why in message


# -- notifications ---------------------------------------------------------------------------


def test_notification_with_unknown_pipelines_is_refused() -> None:
    message = refused(
        doc(
            notifications={
                "chat": {"format": "slack", "url": "https://hooks.example/x", "pipelines": ["app"]},
                "ops": {"url": "https://ops.example/x", "pipelines": ["app", "nope", "gone"]},
            }
        )
    )
    assert "notifications.ops.pipelines: unknown ['gone', 'nope']" in message
    assert "notifications.chat" not in message


def test_notification_needs_an_address_and_known_events() -> None:
    assert "a notification needs url or secret_env" in refused(
        doc(notifications={"chat": {"format": "slack"}})
    )
    message = refused(doc(notifications={"chat": {"url": "https://x.example", "events": ["oops"]}}))
    assert "notifications.chat.events.0" in message
    assert "notifications.chat.format" in refused(
        doc(notifications={"chat": {"url": "https://x.example", "format": "teams"}})
    )


def test_notification_defaults() -> None:
    config = WavelineConfig.model_validate(
        doc(notifications={"all": {"url": "https://x.example/hook"}})
    )
    n = config.notifications["all"]
    assert n.format == "cloudevents"
    assert set(n.events) == {"evicted", "failed", "degraded", "promotion_done", "dead_letter"}
    assert n.pipelines == ()


# -- delivery --------------------------------------------------------------------------------


def test_delivery_durations() -> None:
    d = DeliveryConfig.model_validate({"backoff": 0.2, "cap": "1m", "timeout": "5s"})
    assert (d.backoff, d.cap, d.timeout) == (
        timedelta(milliseconds=200),
        timedelta(minutes=1),
        timedelta(seconds=5),
    )
    # What a dumped config holds (ISO 8601) reads back the same.
    assert DeliveryConfig.model_validate(d.model_dump(mode="json")) == d
    assert DeliveryConfig() == DeliveryConfig.model_validate({})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", 51),
        ("backoff", "0.5s"),  # string forms are whole seconds; write 0.5
        ("backoff", -1),
        ("timeout", "soon"),
    ],
)
def test_bad_delivery_is_refused(field: str, value: Any) -> None:
    assert f"delivery.{field}" in refused(doc(delivery={field: value}))


# -- secrets ---------------------------------------------------------------------------------


def full() -> WavelineConfig:
    d = doc(
        repo={"forge": {"kind": "github", "token_env": "GH_TOKEN"}, "token_env": "GIT_TOKEN"},
        pipeline={
            "strategy": {"kind": "webhook", "secret_env": "PIPELINE_HOOK"},
            "result_token_env": "APP_RESULT_TOKEN",
        },
        production={"strategy": {"kind": "pull-request"}},
        notifications={
            "chat": {"format": "slack", "secret_env": "SLACK_HOOK"},
            "ops": {"url": "https://ops.example/hook"},
        },
    )
    d["pipelines"]["app"]["waves"][1]["strategy"] = {"kind": "webhook", "secret_env": "WAVE_HOOK"}
    d["repos"]["other"] = {"url": "https://git.example.com/org/other.git"}
    d["pipelines"]["svc"] = {
        "repo": "other",
        "waves": [{"name": "dev", "targets": ["dev-us"]}],
        "strategy": {"kind": "webhook", "url": "https://svc.example/hook"},
    }
    return WavelineConfig.model_validate(d)


def test_secret_env_names_lists_every_outbound_secret() -> None:
    assert full().secret_env_names() == {
        "GH_TOKEN",  # the forge's token
        "PIPELINE_HOOK",  # the pipeline's webhook strategy
        "WAVE_HOOK",  # a wave's own webhook strategy
        "APP_RESULT_TOKEN",  # who may report webhook results
        "SLACK_HOOK",  # a notification's secret
    }
    # Git credentials are read by git-writer itself; url-only webhooks need no secret.
    assert WavelineConfig.model_validate(doc()).secret_env_names() == set()


def test_secrets_from_env_read_only_the_named_variables() -> None:
    config = full()
    auth = AuthConfig(ci_token_env="MY_CI_TOKEN")
    env = {
        "MY_CI_TOKEN": "ci-secret",
        "WAVELINE_CI_TOKEN": "not-this-one",
        "WAVELINE_OPERATOR_TOKEN": "op-secret",
        "GH_TOKEN": "gh-secret",
        "PIPELINE_HOOK": "address: https://deploy.example.com/hook\ntoken: t0k3n\n",
        "WAVE_HOOK": "",  # empty: as if unset
        "SLACK_HOOK": "address: https://hooks.slack.example/T/B/x\n",
        "UNRELATED_SECRET": "never-read",
        "GIT_TOKEN": "git-secret",
    }
    secrets = Secrets.from_env(auth, env, names=config.secret_env_names())
    assert set(secrets.named) == {"GH_TOKEN", "PIPELINE_HOOK", "SLACK_HOOK"}
    forge_token = secrets.get("GH_TOKEN")
    assert forge_token is not None and forge_token.get_secret_value() == "gh-secret"
    assert secrets.get("UNRELATED_SECRET") is None
    assert secrets.get("WAVE_HOOK") is None
    assert secrets.get(None) is None
    assert secrets.ci_token is not None and secrets.ci_token.get_secret_value() == "ci-secret"
    assert secrets.operator_token is not None
    assert secrets.operator_token.get_secret_value() == "op-secret"
    assert secrets.argocd_token is None
    # Never printed.
    assert "gh-secret" not in repr(secrets) and "t0k3n" not in str(secrets)
    # Without names, nothing outbound is read.
    assert Secrets.from_env(auth, env).named == {}
