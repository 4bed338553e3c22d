"""The freeze gate (services/promoter/freeze.py) and its config (shared/freeze_config.py):
windows in a time zone across DST changes, overlapping and adjacent windows, a window across
midnight, one-off ranges, manual freezes, introductions and break-glass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from waveline.services.promoter.freeze import (
    BreakGlass,
    ManualFreeze,
    break_glass_for,
    freeze_gate,
    wave_freeze,
)
from waveline.shared.config import PipelineConfig, load_config
from waveline.shared.errors import ConfigError
from waveline.shared.freeze_config import FreezeWindows

CONFIG = """
repos:
  cfg:
    url: https://git.example.com/org/cfg.git
    token_env: WAVELINE_GIT_TOKEN
    author: {name: waveline, email: waveline@example.com}
pipelines:
  app:
    repo: cfg
    freeze:
      windows:
        - {cron: "0 18 * * FRI", duration: 62h, timezone: Europe/Paris, reason: weekend}
      ranges:
        - {start: "2026-12-23T18:00:00+01:00", end: "2027-01-04T08:00:00+01:00"}
    waves:
      - {name: staging, targets: [staging]}
      - name: production
        targets: [prod]
        freeze:
          windows: [{cron: "0 9 * * *", duration: 1h}]
"""


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def windows(*items: dict[str, Any], ranges: tuple[dict[str, Any], ...] = ()) -> FreezeWindows:
    return FreezeWindows.model_validate({"windows": list(items), "ranges": list(ranges)})


def gate(groups: tuple[FreezeWindows, ...], now: datetime) -> tuple[bool, datetime | None, str]:
    verdict = freeze_gate(groups, (), now, pipeline="app", wave="production")
    return verdict.is_open, verdict.until, verdict.reason


def test_config_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "waveline.yaml"
    path.write_text(CONFIG)
    pipeline = load_config(path).pipelines["app"]
    assert pipeline.freeze.introductions == "frozen"
    assert pipeline.freeze.windows[0].duration == timedelta(hours=62)
    assert pipeline.waves[1].freeze.windows[0].timezone == "UTC"
    # Friday 2026-12-11 19:00 in Paris: the weekend window, until Monday 08:00 Paris.
    verdict = wave_freeze("app", pipeline, "staging", (), utc(2026, 12, 11, 18))
    assert (verdict.waiting_for, verdict.reason) == ("freeze", "weekend")
    assert verdict.until == utc(2026, 12, 14, 7)
    # The wave's own window applies to that wave only.
    assert wave_freeze("app", pipeline, "production", (), utc(2026, 12, 8, 9, 30)).until == utc(
        2026, 12, 8, 10
    )
    assert wave_freeze("app", pipeline, "staging", (), utc(2026, 12, 8, 9, 30)).is_open


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ('"0 18 * * FRI"', '"0 18 * FRI"', "pipelines.app.freeze.windows.0.cron"),
        ('"0 18 * * FRI"', '"0 0 18 * * FRI"', "pipelines.app.freeze.windows.0.cron"),
        ("duration: 62h", "duration: 0s", "pipelines.app.freeze.windows.0.duration"),
        ("duration: 62h", "duration: 800h", "pipelines.app.freeze.windows.0.duration"),
        ("Europe/Paris", "Europe/Atlantis", "pipelines.app.freeze.windows.0.timezone"),
        ("2027-01-04T08:00:00+01:00", "2026-12-01T08:00:00+01:00", "pipelines.app.freeze.ranges.0"),
        ("2027-01-04T08:00:00+01:00", "2027-01-04T08:00:00", "pipelines.app.freeze.ranges.0.end"),
        ("      ranges:", "      introductions: maybe\n      ranges:", "introductions"),
        ("duration: 1h}]", "duration: 1h, tz: UTC}]", "pipelines.app.waves.1.freeze.windows.0"),
    ],
)
def test_bad_freeze_config_names_the_field(tmp_path: Path, old: str, new: str, where: str) -> None:
    assert old in CONFIG
    path = tmp_path / "waveline.yaml"
    path.write_text(CONFIG.replace(old, new))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert where in str(caught.value)


def test_window_across_midnight() -> None:
    night = windows({"cron": "0 22 * * *", "duration": "8h", "timezone": "UTC"})
    assert gate((night,), utc(2026, 12, 8, 21, 59))[0]
    assert gate((night,), utc(2026, 12, 8, 22))[:2] == (False, utc(2026, 12, 9, 6))
    assert gate((night,), utc(2026, 12, 9, 2))[:2] == (False, utc(2026, 12, 9, 6))
    assert gate((night,), utc(2026, 12, 9, 6))[0]  # the end is excluded


def test_duration_is_elapsed_time_across_spring_forward() -> None:
    # Paris, 2026-03-29: 02:00 CET becomes 03:00 CEST. 01:00 CET (00:00Z) + 3h is 03:00Z
    # (05:00 CEST), not 04:00 CEST as adding to the wall clock would give.
    w = windows({"cron": "0 1 * * *", "duration": "3h", "timezone": "Europe/Paris"})
    assert gate((w,), utc(2026, 3, 29, 2, 30))[:2] == (False, utc(2026, 3, 29, 3))
    assert gate((w,), utc(2026, 3, 29, 3))[0]
    # The day after, 01:00 is CEST (23:00Z the day before).
    assert gate((w,), utc(2026, 3, 29, 23, 30))[:2] == (False, utc(2026, 3, 30, 2))


def test_start_in_the_skipped_hour_begins_when_the_clock_resumes() -> None:
    # 02:30 does not exist in Paris on 2026-03-29: the window starts at 03:00 CEST (01:00Z).
    w = windows({"cron": "30 2 * * *", "duration": "1h", "timezone": "Europe/Paris"})
    assert gate((w,), utc(2026, 3, 29, 0, 59))[0]
    assert gate((w,), utc(2026, 3, 29, 1, 10))[:2] == (False, utc(2026, 3, 29, 2))


def test_fall_back() -> None:
    # Paris, 2026-10-25: 03:00 CEST becomes 02:00 CET. Midnight CEST (22:00Z) + 4h elapsed.
    w = windows({"cron": "0 0 * * *", "duration": "4h", "timezone": "Europe/Paris"})
    assert gate((w,), utc(2026, 10, 25, 1, 30))[:2] == (False, utc(2026, 10, 25, 2))
    # A start inside the hour that repeats happens at both of its occurrences (the freeze
    # is never shorter for it): 02:30 CEST (00:30Z) and 02:30 CET (01:30Z).
    twice = windows({"cron": "30 2 * * *", "duration": "30m", "timezone": "Europe/Paris"})
    assert gate((twice,), utc(2026, 10, 25, 0, 40))[:2] == (False, utc(2026, 10, 25, 1))
    assert gate((twice,), utc(2026, 10, 25, 1, 15))[0]
    assert gate((twice,), utc(2026, 10, 25, 1, 40))[:2] == (False, utc(2026, 10, 25, 2))


def test_overlapping_and_adjacent_windows_open_at_the_real_end() -> None:
    pipeline = windows({"cron": "0 9 * * *", "duration": "2h", "reason": "morning"})
    wave = windows(
        {"cron": "0 10 * * *", "duration": "3h"},  # overlaps: to 13:00
        ranges=({"start": "2026-12-08T14:00:00+01:00", "end": "2026-12-08T15:00:00Z"},),
    )  # touches: 13:00Z to 15:00Z
    opened, until, reason = gate((pipeline, wave), utc(2026, 12, 8, 9, 30))
    assert (opened, until, reason) == (False, utc(2026, 12, 8, 15), "morning")
    # Both in force: both said.
    assert "morning" in gate((pipeline, wave), utc(2026, 12, 8, 10, 30))[2]
    assert "'0 10 * * *' (UTC)" in gate((pipeline, wave), utc(2026, 12, 8, 10, 30))[2]
    # The next day has no range: the chain ends at 13:00.
    assert gate((pipeline, wave), utc(2026, 12, 9, 9, 30))[1] == utc(2026, 12, 9, 13)
    # A gap of a minute is no chain.
    gap = windows({"cron": "1 11 * * *", "duration": "1h"})
    assert gate((pipeline, gap), utc(2026, 12, 8, 9, 30))[1] == utc(2026, 12, 8, 11)


def test_windows_chaining_for_ever_have_no_known_end() -> None:
    always = windows({"cron": "0 * * * *", "duration": "1h"})
    assert gate((always,), utc(2026, 12, 8, 9, 30))[:2] == (False, None)


def test_one_off_range_with_offsets() -> None:
    year_end = windows(
        ranges=(
            {
                "start": "2026-12-23T18:00:00+01:00",
                "end": "2027-01-04T08:00:00+01:00",
                "reason": "year end",
            },
        )
    )
    assert gate((year_end,), utc(2026, 12, 23, 16, 59))[0]
    assert gate((year_end,), utc(2026, 12, 23, 17)) == (False, utc(2027, 1, 4, 7), "year end")
    assert gate((year_end,), utc(2027, 1, 4, 7))[0]


def _manual(scope: str, pipeline: str | None = None, wave: str | None = None) -> ManualFreeze:
    return ManualFreeze(
        scope=scope,  # type: ignore[arg-type]
        pipeline=pipeline,
        wave=wave,
        reason="incident 42",
        actor="alice",
        created_at=utc(2026, 12, 8),
    )


def test_manual_freezes_have_no_end() -> None:
    night = windows({"cron": "0 22 * * *", "duration": "8h"})
    now = utc(2026, 12, 8, 23)
    for freeze in (_manual("all"), _manual("pipeline", "app"), _manual("wave", "app", "prod")):
        verdict = freeze_gate((night,), (freeze,), now, pipeline="app", wave="prod")
        assert (verdict.waiting_for, verdict.until) == ("freeze", None)
        assert verdict.reason.startswith("frozen by alice: incident 42; ")
    others = (_manual("pipeline", "other"), _manual("wave", "app", "staging"))
    assert freeze_gate((), others, now, pipeline="app", wave="prod").is_open


def _pipeline(introductions: str) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "repo": "cfg",
            "freeze": {
                "introductions": introductions,
                "windows": [{"cron": "0 22 * * *", "duration": "8h"}],
            },
            "waves": [{"name": "dev", "targets": ["dev"]}, {"name": "prod", "targets": ["p"]}],
        }
    )


def test_introductions_into_the_first_wave() -> None:
    now = utc(2026, 12, 8, 23)
    frozen = _pipeline("frozen")
    assert not wave_freeze("app", frozen, "dev", (), now, introduction=True).is_open
    allowed = _pipeline("allowed")
    assert wave_freeze("app", allowed, "dev", (), now, introduction=True).is_open
    assert wave_freeze("app", allowed, "dev", [_manual("all")], now, introduction=True).is_open
    named = [_manual("wave", "app", "dev")]
    assert not wave_freeze("app", allowed, "dev", named, now, introduction=True).is_open
    # Promotions into later waves stay frozen.
    assert not wave_freeze("app", allowed, "prod", (), now).is_open


def test_break_glass_for_that_promotion_only() -> None:
    def glass(wave: str, app_sha: str, at: datetime) -> BreakGlass:
        return BreakGlass("app", wave, app_sha, "hotfix", "alice", at)

    early, late = (
        glass("prod", "a" * 40, utc(2026, 12, 8, 9)),
        glass("prod", "a" * 40, utc(2026, 12, 8, 10)),
    )
    records = [early, late, glass("dev", "b" * 40, utc(2026, 12, 8, 11))]
    assert break_glass_for(records, pipeline="app", wave="prod", app_sha="a" * 40) == late
    assert break_glass_for(records, pipeline="app", wave="prod", app_sha="b" * 40) is None
    assert break_glass_for(records, pipeline="x", wave="prod", app_sha="a" * 40) is None
    # One made before this promotion existed was for an earlier one.
    assert (
        break_glass_for(
            records, pipeline="app", wave="prod", app_sha="a" * 40, not_before=utc(2026, 12, 8, 12)
        )
        is None
    )


def test_openapi_describes_the_freeze_endpoints() -> None:
    from waveline.services.ingest.freeze_http import FreezeBody
    from waveline.services.ingest.openapi import document

    paths = document()["paths"]
    for prefix in ("/v1", "/v1/pipelines/{pipeline}", "/v1/pipelines/{pipeline}/waves/{wave}"):
        post = paths[f"{prefix}/freeze"]["post"]
        assert post["requestBody"]["content"]["application/json"]["schema"] == (
            FreezeBody.model_json_schema()
        )
        assert {"201", "401", "403", "422"} <= set(post["responses"])
        assert "200" in paths[f"{prefix}/unfreeze"]["post"]["responses"]
    approve = paths["/v1/pipelines/{pipeline}/waves/{wave}/{action}"]["post"]["requestBody"]
    glass = approve["content"]["application/json"]["schema"]["properties"]["break_glass"]
    assert glass["anyOf"][0]["required"] == ["reason"]
    assert "200" in paths["/v1/freezes"]["get"]["responses"]


def test_the_documented_example_loads() -> None:
    import re

    import yaml

    text = (Path(__file__).parents[2] / "docs" / "gates.md").read_text()
    section = text[text.index("## Freeze windows") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    shop = PipelineConfig.model_validate(yaml.safe_load(block.group(1))["pipelines"]["shop"])
    assert shop.freeze.introductions == "allowed"
    # Friday 19:00 in Paris: the weekend window, until Monday 08:00 in Paris.
    verdict = wave_freeze("shop", shop, "dev", (), utc(2026, 12, 11, 18))
    assert (verdict.reason, verdict.until) == ("weekend", utc(2026, 12, 14, 7))
