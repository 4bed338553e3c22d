"""Why a GitHub delivery changes nothing (services/ingest/ignore_rules.py), as the answer,
the OpenAPI document and ``waveline status`` tell it."""

from __future__ import annotations

from typing import Any

import pytest

from waveline.cli.ops import format_status
from waveline.services.ingest.ignore_rules import (
    REASONS,
    CauseLog,
    commit_fate,
    context_fate,
    unknown_repository,
    unread_action,
    unread_event,
)
from waveline.services.ingest.ignored_store import name_part
from waveline.services.ingest.openapi import document
from waveline.shared.config import WavelineConfig

SHA = "55576ca70ab6acdfaab7e5db445eaf79e41e6332"


def config(url: str, **repo: Any) -> WavelineConfig:
    return WavelineConfig.model_validate(
        {
            "repos": {"cfg-app": {"url": url, "required_checks": ["ci/validate"], **repo}},
            "pipelines": {
                "app": {
                    "repo": "cfg-app",
                    "layout": {"kind": "images-json", "path": "images/{wave}"},
                    "waves": [{"name": "staging", "targets": ["staging-us"]}],
                }
            },
        }
    )


MIRROR = "https://git.mirror.example.com/cfg-app.git"


def test_a_mirror_url_names_the_configured_repositories_and_the_fix() -> None:
    cfg = config(MIRROR)
    # What Waveline derives from the mirror's url is not GitHub's owner/name.
    assert cfg.repo_by_full_name("acme/cfg-app") is None
    answer = unknown_repository(cfg, "acme/cfg-app", "status").answer()
    assert answer["ignored"] is True
    assert answer["reason"] == "unknown_repository"
    assert answer["forge_name"] == "acme/cfg-app"
    assert answer["configured_repositories"] == [
        {"repo": "cfg-app", "forge_name": "git.mirror.example.com/cfg-app", "from": "url"}
    ]
    assert "git.mirror.example.com/cfg-app (cfg-app)" in answer["detail"]
    assert "set its forge_name: acme/cfg-app" in answer["fix"]
    # The fix works: with forge_name set, the delivery's repository is the configured one.
    fixed = config(MIRROR, forge_name="acme/cfg-app")
    assert fixed.repo_by_full_name("acme/cfg-app") == "cfg-app"
    listed = unknown_repository(fixed, "other/repo", "status").answer()
    assert listed["configured_repositories"][0]["from"] == "forge_name"


def test_a_ping_about_an_unknown_repository_says_so_at_once() -> None:
    cfg = config(MIRROR)
    ping = unread_event(cfg, "ping", "acme/cfg-app")
    assert ping.reason == "unknown_repository"
    assert ping.recorded
    known = unread_event(config(MIRROR, forge_name="acme/cfg-app"), "ping", "acme/cfg-app")
    assert (known.reason, known.repo, known.recorded) == ("event_not_read", "cfg-app", False)
    assert "reaches Waveline" in known.detail
    push = unread_event(cfg, "push", None)
    assert (push.reason, push.repo) == ("event_not_read", None)
    assert "status, check_run, check_suite, pull_request" in push.detail
    assert unread_action("cfg-app", "labeled").reason == "action_not_read"


def test_a_context_no_repository_requires_is_dropped_with_the_required_ones() -> None:
    cfg = config("https://github.com/acme/cfg-app.git")
    assert context_fate(cfg, "cfg-app", "ci/validate") is None
    dropped = context_fate(cfg, "cfg-app", "ci/build")
    assert dropped is not None and not dropped.published
    answer = dropped.answer()
    assert (answer["reason"], answer["context"]) == ("context_not_required", "ci/build")
    assert answer["required_checks"] == ["ci/validate"]
    assert "repos.cfg-app.required_checks" in answer["fix"]
    # One cause per (repo, context): another context is another cause.
    other = context_fate(cfg, "cfg-app", "ci/lint")
    assert other is not None and other.cause != dropped.cause


@pytest.mark.parametrize("state", ["pending", "pull_request"])
def test_a_check_that_may_decide_is_not_ignored(state: str) -> None:
    assert commit_fate("cfg-app", SHA, "ci/validate", state) is None


def test_an_unknown_sha_is_published_and_says_not_yet_known() -> None:
    note = commit_fate("cfg-app", SHA, "ci/validate", None)
    assert note is not None and note.published and note.recorded
    answer = note.answer()
    assert answer["ignored"] is False
    assert answer["reason"] == "sha_not_on_auto"
    assert "not (yet) known on auto" in answer["detail"]
    assert answer["sha"] == SHA


@pytest.mark.parametrize("state", ["green", "red", "replaced"])
def test_a_check_on_a_judged_commit_is_dropped(state: str) -> None:
    judged = commit_fate("cfg-app", SHA, "ci/validate", state)
    assert judged is not None and not judged.published
    assert judged.answer()["commit_state"] == state
    # Every such check of a repo is one cause, whatever its sha (a flood logs once).
    other = commit_fate("cfg-app", "1" * 40, "ci/validate", state)
    assert other is not None and other.cause == judged.cause


def test_the_cause_log_says_yes_once_per_cause_and_is_bounded() -> None:
    log = CauseLog(limit=2)
    assert [log.first(("a",)) for _ in range(3)] == [True, False, False]
    assert log.first(("b",))
    assert log.first(("c",))  # "a" is forgotten: the oldest goes first
    assert not log.first(("c",))
    assert log.first(("a",))


def test_sender_text_is_clipped() -> None:
    long = "x" * 5000
    answer = unknown_repository(config(MIRROR), long, "status").answer()
    assert len(answer["forge_name"]) == 200
    assert len(answer["detail"]) < 600


def test_the_document_describes_the_answers() -> None:
    answers = document()["paths"]["/v1/webhooks/github"]["post"]["responses"]
    assert "204" not in answers
    why = answers["200"]["content"]["application/json"]["schema"]["oneOf"][1]
    assert set(why["required"]) == {"ignored", "reason", "detail"}
    assert why["properties"]["reason"]["enum"] == list(REASONS)
    accepted = answers["202"]["content"]["application/json"]["schema"]
    assert accepted["required"] == ["event_id"]


def test_waveline_status_shows_the_last_ignored_deliveries() -> None:
    doc = {
        "pipeline": "app",
        "repo": "cfg-app",
        "waves": [],
        "ignored_deliveries": [
            {
                "repo": "acme/cfg-app",
                "known": False,
                "reason": "unknown_repository",
                "event": "status",
                "context": None,
                "sha": None,
                "detail": "status about repository acme/cfg-app, which is not the forge…",
                "at": "2026-12-07T16:01:02.345678+00:00",
            },
            {
                "repo": "cfg-app",
                "known": True,
                "reason": "context_not_required",
                "event": "check_run",
                "context": "ci/build",
                "sha": SHA,
                "detail": "check 'ci/build' is not a required check of repository cfg-app",
                "at": "2026-12-07T16:00:00+00:00",
            },
        ],
    }
    lines = format_status(doc).splitlines()
    assert lines[1] == (
        "  ignored status about unknown repository acme/cfg-app at 2026-12-07T16:01:02Z"
        " (unknown_repository): status about repository acme/cfg-app, which is not the forge…"
    )
    assert lines[2].startswith("  ignored check_run at 2026-12-07T16:00:00Z")
    assert "'ci/build' is not a required check" in lines[2]
    # A snapshot from an ingest without the list still renders.
    assert format_status({**doc, "ignored_deliveries": []}) == "pipeline app (repo cfg-app)"


def test_name_part_matches_mirrors_to_their_repository() -> None:
    assert name_part("acme/cfg-app") == name_part("git.mirror.example.com/cfg-app") == "cfg-app"
    assert name_part("Acme/CFG-App.git") == "cfg-app"


def test_control_characters_never_reach_a_log_line() -> None:
    answer = unknown_repository(config(MIRROR), "acme/x\nFAKE line", "status").answer()
    assert answer["forge_name"] == "acme/x?FAKE line"
    assert "\n" not in answer["detail"] + answer["fix"]
