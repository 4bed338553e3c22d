"""``waveline dora``'s window and table (waveline/cli/dora.py) and its registration."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from tests.unit.test_dora import WAVES, h, history
from waveline.cli.dora import parse_since, render
from waveline.cli.main import _parser
from waveline.cli.ops import CliError, image_set_document
from waveline.shared.dora import compute
from waveline.shared.dora_feed import families

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def test_since_takes_a_duration_or_a_date() -> None:
    assert parse_since("30d", NOW) == NOW - timedelta(days=30)
    assert parse_since("12h", NOW) == NOW - timedelta(hours=12)
    assert parse_since("2w", NOW) == NOW - timedelta(days=14)
    assert parse_since("2026-12-01", NOW) == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_since("2026-12-01T10:00+02:00", NOW) == datetime(2026, 12, 1, 8, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("a while", NOW)


def test_the_table_shows_each_number() -> None:
    text = render(compute(history(), WAVES, since=h(0), until=h(48)))
    assert "deployment frequency  2.00/day (4 into prod)" in text
    assert "lead time (median/p90) 4.0h / 6.0h (n=3)" in text
    assert "change failure rate   50% (4 of 8 deployments)" in text
    assert "time to restore       35.0m / 40.0m (n=2), 1 open" in text
    assert "failures              evicted 1, failed 2, rollback 1, verification 1" in text
    assert "  staging                4     2.00      3   75%  30.0m / 30.0m (n=1)" in text


def test_the_subcommand_is_registered() -> None:
    args = _parser().parse_args(["dora", "app", "--since", "7d", "--json", "--from-git"])
    assert (args.command, args.pipeline, args.since, args.json, args.from_git) == (
        "dora",
        "app",
        "7d",
        True,
        True,
    )
    assert _parser().parse_args(["dora"]).since == "30d"


def test_publish_sends_the_app_commit_time() -> None:
    args = _parser().parse_args(
        ["publish", "--pipeline", "app", "--app-sha", "a" * 40, "--app-committed-at", "X"]
    )
    assert args.app_committed_at == "X"
    image = f"s1=r.example/s1:v1@sha256:{'b' * 64}"
    doc = image_set_document("app", "a" * 40, [image], None, "2026-12-01T10:00:00Z")
    assert doc["app_committed_at"] == "2026-12-01T10:00:00Z"
    assert "app_committed_at" not in image_set_document("app", "a" * 40, [image], None)
    with pytest.raises(CliError, match="offset"):
        image_set_document("app", "a" * 40, [image], None, "2026-12-01T10:00:00")


def test_the_metrics_families_carry_the_numbers() -> None:
    registry = CollectorRegistry()

    class Fixed:
        def collect(self) -> Iterator[Metric]:
            yield from families(compute(history(), WAVES, since=h(0), until=h(48)))

    registry.register(Fixed())
    text = generate_latest(registry).decode()
    for line in (
        'waveline_dora_deployments{pipeline="app",wave="staging"} 4.0',
        'waveline_dora_deployments_per_day{pipeline="app",wave="prod"} 2.0',
        'waveline_dora_lead_time_seconds{pipeline="app",quantile="0.5"} 14400.0',
        'waveline_dora_lead_time_seconds{pipeline="app",quantile="0.9"} 21600.0',
        'waveline_dora_change_failure_rate{pipeline="app"} 0.5',
        'waveline_dora_wave_change_failure_rate{pipeline="app",wave="staging"} 0.75',
        'waveline_dora_time_to_restore_seconds{pipeline="app",quantile="0.5"} 2100.0',
        'waveline_dora_open_failures{pipeline="app"} 1.0',
        'waveline_dora_failures{kind="verification",pipeline="app"} 1.0',
    ):
        assert line in text
    # Nothing deployed: no rate and no quantile rather than a misleading 0.
    empty = families(compute([], {"idle": ["only"]}, since=h(0), until=h(1)))
    assert {m.name: len(m.samples) for m in empty}["waveline_dora_change_failure_rate"] == 0
    assert {m.name: len(m.samples) for m in empty}["waveline_dora_lead_time_seconds"] == 0
