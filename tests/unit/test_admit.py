"""The git-writer's admission rules as pure functions (services/git_writer/admit.py): what a
command may do, decided from the pipeline file and what git shows, whoever produced it."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support import image_set
from waveline.services.git_writer.admit import Refused, Seen, by_config, by_git
from waveline.shared.config import WavelineConfig
from waveline.shared.errors import PreconditionFailed
from waveline.shared.models.git import (
    AlignAuto,
    Evict,
    FastForward,
    IntroduceImages,
    PromoteWave,
    RollbackWave,
)
from waveline.shared.models.images import ImageSetAnnounced

APP = "a" * 40
OTHER = "b" * 40
SHA = "c" * 40
NOW = datetime.now(UTC)


def config(**strategies: dict[str, Any]) -> WavelineConfig:
    """Pipeline ``app`` (staging, internal, production) in repo ``cfg-app``, and pipeline
    ``web`` in repo ``cfg-web``; ``strategies`` sets a wave's strategy by its name, or the
    pipeline's as ``pipeline=``."""
    waves = [
        {"name": name, "targets": [f"{name}-us"]}
        | ({"strategy": strategies[name]} if name in strategies else {})
        for name in ("staging", "internal", "production")
    ]
    forge = {"forge": {"kind": "github", "token_env": "GH_TOKEN"}}
    app: dict[str, Any] = {"repo": "cfg-app", "waves": waves}
    if "pipeline" in strategies:
        app["strategy"] = strategies["pipeline"]
    return WavelineConfig.model_validate(
        {
            "repos": {
                "cfg-app": {"url": "https://git.example.com/cfg-app.git", **forge},
                "cfg-web": {"url": "https://git.example.com/cfg-web.git"},
            },
            "pipelines": {
                "app": app,
                "web": {"repo": "cfg-web", "waves": [{"name": "dev", "targets": ["dev-us"]}]},
            },
        }
    )


def introduce(
    wave: str = "staging", branch: str | None = None, pipeline: str = "app", repo: str = "cfg-app"
) -> IntroduceImages:
    return IntroduceImages(
        command_id=uuid.uuid4(),
        repo=repo,
        issued_at=NOW,
        pipeline=pipeline,
        wave=wave,
        app_sha=APP,
        images=ImageSetAnnounced.model_validate(image_set(APP)).images,
        branch=branch,
    )


def promote(src: str = "staging", dst: str = "internal", branch: str | None = None) -> PromoteWave:
    return PromoteWave(
        command_id=uuid.uuid4(),
        repo="cfg-app",
        issued_at=NOW,
        pipeline="app",
        from_wave=src,
        to_wave=dst,
        app_sha=APP,
        deployed_sha=SHA,
        branch=branch,
    )


def rollback(wave: str = "production") -> RollbackWave:
    return RollbackWave(
        command_id=uuid.uuid4(),
        repo="cfg-app",
        issued_at=NOW,
        pipeline="app",
        wave=wave,
        app_sha=APP,
        to_sha=SHA,
    )


def rule_of(cfg: WavelineConfig, cmd: Any) -> str | None:
    refusal = by_config(cfg, cmd)
    return refusal.rule if refusal is not None else None


# -- what the config decides -------------------------------------------------------------


def test_what_waveline_itself_sends_is_admitted() -> None:
    cfg = config()
    assert by_config(cfg, introduce()) is None
    assert by_config(cfg, promote()) is None
    assert by_config(cfg, promote("internal", "production")) is None
    for wave in ("staging", "internal", "production"):
        assert by_config(cfg, rollback(wave)) is None
    for cmd in (
        FastForward(command_id=uuid.uuid4(), repo="cfg-app", issued_at=NOW, sha=SHA),
        Evict(command_id=uuid.uuid4(), repo="cfg-app", issued_at=NOW, sha=SHA),
        AlignAuto(command_id=uuid.uuid4(), repo="cfg-app", issued_at=NOW),
    ):
        assert by_config(cfg, cmd) is None


def test_an_introduction_goes_into_the_first_wave_only() -> None:
    cfg = config()
    for wave in ("internal", "production", "nowhere"):
        refusal = by_config(cfg, introduce(wave))
        assert refusal is not None
        assert refusal.rule == "introduce_first_wave"
        assert "into 'staging' only" in refusal.reason
        assert repr(wave) in refusal.reason


def test_the_pipeline_must_exist_and_live_in_the_commands_repo() -> None:
    cfg = config()
    assert rule_of(cfg, introduce(pipeline="nope")) == "known_pipeline"
    # A command for cfg-web that names app's pipeline: app lives in cfg-app.
    refusal = by_config(cfg, introduce(repo="cfg-web"))
    assert refusal is not None
    assert (refusal.rule, refusal.reason) == (
        "known_pipeline",
        "pipeline 'app' lives in repo 'cfg-app'",
    )
    assert rule_of(cfg, introduce("dev", pipeline="web", repo="cfg-web")) is None


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("staging", "production"),  # skips internal
        ("production", "internal"),  # backwards
        ("internal", "internal"),
        ("staging", "qa"),  # no such wave
        ("qa", "staging"),
    ],
)
def test_a_promotion_goes_to_the_very_next_wave(src: str, dst: str) -> None:
    assert rule_of(config(), promote(src, dst)) == "promote_next_wave"


def test_a_rollback_names_a_wave_of_the_pipeline() -> None:
    assert rule_of(config(), rollback("qa")) == "rollback_to_ran"


def test_commit_waves_take_no_branch() -> None:
    cfg = config()
    for branch in ("master", "auto", "evil", "waveline/app/staging"):
        refusal = by_config(cfg, introduce(branch=branch))
        assert refusal is not None
        assert refusal.rule == "branch_template"
        assert "may name no branch" in refusal.reason
        assert rule_of(cfg, promote(branch=branch)) == "branch_template"


def test_pull_request_waves_take_their_template_branch_only() -> None:
    pr = {"kind": "pull-request", "branch": "promote/{pipeline}-{wave}"}
    cfg = config(internal=pr)
    assert by_config(cfg, promote(branch="promote/app-internal")) is None
    for branch in (None, "master", "auto", "promote/app-production", "waveline/app/internal"):
        refusal = by_config(cfg, promote(branch=branch))
        assert refusal is not None, branch
        assert refusal.rule == "branch_template"
        assert "'promote/app-internal'" in refusal.reason
    # The template of the target wave: internal's branch does not carry production.
    assert rule_of(cfg, promote("internal", "production", "promote/app-internal")) == (
        "branch_template"
    )
    assert by_config(cfg, promote("internal", "production")) is None


def test_a_pipeline_wide_pull_request_strategy_covers_the_first_wave() -> None:
    cfg = config(pipeline={"kind": "pull-request"})
    assert by_config(cfg, introduce(branch="waveline/app/staging")) is None
    assert rule_of(cfg, introduce()) == "branch_template"
    assert rule_of(cfg, introduce(branch="waveline/app/internal")) == "branch_template"


def test_a_template_that_names_watched_is_refused() -> None:
    cfg = config(internal={"kind": "pull-request", "branch": "auto{pipeline}{wave}"})
    cfg = cfg.model_copy(
        update={
            "repos": {
                **cfg.repos,
                "cfg-app": cfg.repos["cfg-app"].model_copy(
                    update={"watched_branch": "autoappinternal"}
                ),
            }
        }
    )
    refusal = by_config(cfg, promote(branch="autoappinternal"))
    assert refusal is not None
    assert refusal.rule == "branch_template"
    assert "watched or auto" in refusal.reason


def test_webhook_waves_take_no_git_command() -> None:
    cfg = config(internal={"kind": "webhook", "url": "https://deploy.example.com/hook"})
    refusal = by_config(cfg, promote())
    assert refusal is not None
    assert refusal.rule == "branch_template"
    assert "webhook" in refusal.reason
    # A rollback is written on auto whatever the wave's strategy (the promoter sends it so).
    assert by_config(cfg, rollback("internal")) is None


# -- what git decides --------------------------------------------------------------------

HELD = Seen(on_watched=True, holds_images=True, app_sha=APP)


def test_a_deployed_commit_on_watched_holding_the_set_is_admitted() -> None:
    assert by_git(promote(), HELD, "master") is None
    assert by_git(rollback(), HELD, "master") is None


@pytest.mark.parametrize(
    ("seen", "reason"),
    [
        (Seen(False, False, None), f"deployed commit {SHA} is not on master"),
        (Seen(True, False, None), f"wave 'staging' holds no images at {SHA}"),
        (
            Seen(True, True, OTHER),
            f"wave 'staging' holds set {OTHER} at {SHA}, not {APP}",
        ),
        (
            Seen(True, True, None),
            f"wave 'staging' holds no set Waveline wrote at {SHA}, not {APP}",
        ),
    ],
)
def test_a_promotion_reads_a_set_the_source_wave_holds_on_watched(seen: Seen, reason: str) -> None:
    refusal = by_git(promote(), seen, "master")
    assert refusal is not None
    assert (refusal.rule, refusal.reason) == ("promote_from_watched", reason)


@pytest.mark.parametrize(
    "seen",
    [Seen(False, True, APP), Seen(True, False, APP), Seen(True, True, OTHER)],
)
def test_a_rollback_goes_to_a_set_the_wave_held_on_watched(seen: Seen) -> None:
    refusal = by_git(rollback(), seen, "main")
    assert refusal is not None
    assert refusal.rule == "rollback_to_ran"
    if not seen.on_watched:
        assert refusal.reason == f"rollback commit {SHA} is not on main"


def test_a_refusal_is_a_precondition_failure_that_keeps_its_rule() -> None:
    exc = Refused("branch_template", "wave 'x' ...")
    assert isinstance(exc, PreconditionFailed)
    assert not exc.retriable
    back = pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes)
    assert (back.rule, back.reason, str(back)) == (
        "branch_template",
        "wave 'x' ...",
        "branch_template: wave 'x' ...",
    )
