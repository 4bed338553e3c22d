"""The pure token, scope, image and Host rules (shared/auth_rules.py) and their config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from waveline.shared.auth_rules import (
    Principal,
    Refusal,
    authorize,
    images_refused,
    loopback_host,
    resolve,
    token_table,
    visible_pipelines,
)
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.models.images import ImageRef

DIGEST = "sha256:" + "a" * 64


def config(tokens: list[dict[str, Any]] | None = None, **web: Any) -> WavelineConfig:
    waves = [{"name": "staging", "targets": ["t1"]}]
    return WavelineConfig.model_validate(
        {
            "repos": {"cfg": {"url": "https://git.example.com/org/cfg.git"}},
            "pipelines": {
                "app": {"repo": "cfg", "waves": waves},
                "web": {"repo": "cfg", "waves": waves, **web},
                "web-eu": {"repo": "cfg", "waves": waves},
            },
            "auth": {"tokens": tokens or []},
        }
    )


TEAM_B = [
    {"name": "team-b-ci", "role": "ci", "pipelines": ["web", "web-*"], "token_env": "B_CI"},
    {"name": "team-b-ops", "role": "operator", "pipelines": ["web"], "token_env": "B_OPS"},
]


def test_named_tokens_and_shorthands_both_count() -> None:
    cfg = config(TEAM_B, result_token_env="WEB_RESULT")
    secrets = Secrets.from_env(
        cfg.auth,
        {
            "B_CI": "b-ci-secret",
            "B_OPS": "b-ops-secret",
            "WAVELINE_CI_TOKEN": "global-ci",
            "WEB_RESULT": "web-result",
        },
        names=cfg.secret_env_names(),
    )
    table = token_table(cfg, secrets)
    assert [e.principal.name for e in table] == ["team-b-ci", "team-b-ops", "ci", "result:web"]
    assert resolve(table, "b-ci-secret") == (Principal("team-b-ci", "ci", ("web", "web-*")),)
    assert resolve(table, "global-ci")[0].name == "ci"
    assert resolve(table, "web-result") == (Principal("result:web", "result", ("web",)),)
    assert resolve(table, "nobody") == ()
    assert resolve(table, "b-ci-secre") == ()  # a prefix is not the token


def test_unset_variables_give_no_token() -> None:
    cfg = config(TEAM_B)
    table = token_table(cfg, Secrets.from_env(cfg.auth, {"B_CI": ""}))
    assert table == ()


def test_scope_by_name_and_glob() -> None:
    team_b = Principal("team-b-ci", "ci", ("web", "web-*"))
    assert authorize([team_b], ("ci",), ("web",), "CI token") == team_b
    assert authorize([team_b], ("ci",), ("web-eu",), "CI token") == team_b
    refused = authorize([team_b], ("ci",), ("app",), "CI token")
    assert isinstance(refused, Refusal) and refused.status == 403
    assert "team-b-ci" in refused.reason and "app" in refused.reason
    # every pipeline concerned must be covered (an Argo CD target shared by two pipelines)
    assert isinstance(authorize([team_b], ("ci",), ("web", "app"), "CI token"), Refusal)
    names = ["app", "web", "web-eu", "webby"]
    assert visible_pipelines([team_b], names) == ["web", "web-eu"]
    assert visible_pipelines([team_b, Principal("a", "ci", ("app",))], names) == names[:3]


def test_role_is_checked_before_scope() -> None:
    ops = Principal("operator", "operator", ("*",))
    refused = authorize([ops], ("ci",), ("app",), "CI token")
    assert isinstance(refused, Refusal) and "is not a CI token" in refused.reason
    unknown = authorize([], ("ci",), (), "CI token")
    assert isinstance(unknown, Refusal) and unknown.status == 403
    assert "unknown token" in unknown.reason


def test_a_value_configured_twice_acts_as_the_first_that_may() -> None:
    narrow = Principal("team-b-ci", "ci", ("web",))
    wide = Principal("ci", "ci", ("*",))
    assert authorize([narrow, wide], ("ci",), ("web",), "CI token") == narrow
    assert authorize([narrow, wide], ("ci",), ("app",), "CI token") == wide


def ref(repo: str) -> ImageRef:
    return ImageRef.model_validate({"Tag": f"{repo}:1.0", "Digest": f"{repo}@{DIGEST}"})


def test_allowed_images_match_the_repository_without_tag_or_digest() -> None:
    allowed = ("registry.example.com/team-b/*",)
    images = {
        "api": ref("registry.example.com/team-b/api"),
        "evil": ref("registry.example.com/team-a/api"),
        "hub": ref("docker.io/library/nginx"),
    }
    assert images_refused(allowed, images) == {
        "evil": "registry.example.com/team-a/api",
        "hub": "docker.io/library/nginx",
    }
    assert images_refused((), images) == {}  # no list: any image
    assert images_refused(("registry.example.com/team-b/api",), {"api": images["api"]}) == {}
    # a prefix of the registry's name is not the registry
    assert images_refused(allowed, {"x": ref("registry.example.com.evil.io/team-b/api")}) == {
        "x": "registry.example.com.evil.io/team-b/api"
    }


@pytest.mark.parametrize(
    "pattern", ["", " registry.example.com/*", "registry.example.com/app@sha256:*"]
)
def test_bad_allowed_images_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValidationError, match="allowed_images"):
        config(allowed_images=[pattern])


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ([{"name": "ci", "role": "ci", "pipelines": ["*"], "token_env": "X"}], "single-token"),
        (
            [
                {"name": "a", "role": "ci", "pipelines": ["*"], "token_env": "X"},
                {"name": "a", "role": "operator", "pipelines": ["*"], "token_env": "Y"},
            ],
            "unique",
        ),
        ([{"name": "a", "role": "ci", "pipelines": ["wbe"], "token_env": "X"}], "unknown"),
        ([{"name": "a", "role": "ci", "pipelines": [], "token_env": "X"}], "at least 1"),
        ([{"name": "a", "role": "admin", "pipelines": ["*"], "token_env": "X"}], "role"),
    ],
)
def test_bad_tokens_are_refused(tokens: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(tokens)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost:8080", True),
        ("127.0.0.1", True),
        ("127.0.0.1:18080", True),
        ("[::1]", True),
        ("[::1]:8080", True),
        (None, False),
        ("", False),
        ("localhost.", False),
        ("localhost.evil.example", False),
        ("evil.example", False),
        ("127.0.0.2", False),
        ("127.0.0.1.nip.io", False),
        ("[::2]:80", False),
        ("::1", False),
        ("[127.0.0.1]", False),
        ("localhost:", False),
        ("localhost:80:80", False),
        ("localhost:abc", False),
        ("localhost:123456", False),
        ("localhost@evil.example", False),
    ],
)
def test_loopback_host(host: str | None, loopback: bool) -> None:
    assert loopback_host(host) is loopback


def test_secrets_from_env_reads_the_named_tokens() -> None:
    cfg = config(TEAM_B)
    secrets = Secrets.from_env(cfg.auth, {"B_CI": "x1", "B_OPS": "x2", "OTHER": "x3"})
    assert secrets.named == {"B_CI": SecretStr("x1"), "B_OPS": SecretStr("x2")}


def test_dashboard_and_metrics_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().dashboard_open == "off"
    assert Settings().metrics_token is None
    monkeypatch.setenv("WAVELINE_DASHBOARD_OPEN", "loopback")
    monkeypatch.setenv("WAVELINE_METRICS_TOKEN", "m-token")
    settings = Settings()
    assert settings.dashboard_open == "loopback"
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == "m-token"
    assert "m-token" not in repr(settings)
    monkeypatch.setenv("WAVELINE_DASHBOARD_OPEN", "yes")
    with pytest.raises(ValidationError, match="dashboard_open"):
        Settings()


def test_make_up_opens_the_dashboard_to_loopback_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo stack's services get WAVELINE_DASHBOARD_OPEN=loopback (a caller's own value
    wins); nothing else opens the dashboard."""
    from waveline.devstack.paths import StackPaths
    from waveline.devstack.stack import service_env

    paths = StackPaths(tmp_path, tmp_path / "run", tmp_path / "cache", 1, 2, 3, 4)
    monkeypatch.delenv("WAVELINE_DASHBOARD_OPEN", raising=False)
    assert service_env(paths)["WAVELINE_DASHBOARD_OPEN"] == "loopback"
    monkeypatch.setenv("WAVELINE_DASHBOARD_OPEN", "off")
    assert service_env(paths)["WAVELINE_DASHBOARD_OPEN"] == "off"
