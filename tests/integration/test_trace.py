"""``waveline trace`` against real Kafka: an image set's journey read back from the topics."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from tests.support import APP_SHA, make_config
from tests.unit.test_trace import C1, C2, C9, journey
from waveline.cli.main import main
from waveline.shared.config import Settings
from waveline.shared.kafka import make_broker

pytestmark = pytest.mark.timeout(90)


def key_of(message: BaseModel) -> bytes:
    """Keys as the services use them: repo for git and checks, app for deploys, else pipeline."""
    for name in ("repo", "app", "pipeline"):
        value = getattr(message, name, None)
        if isinstance(value, str):
            return value.encode()
    raise AssertionError(f"no key for {message!r}")


async def publish_journey(settings: Settings, t0: int) -> None:
    """Publish the journey with its own record timestamps (what trace reads as hop times)."""
    broker = make_broker(settings, "trace-test")
    await broker.start()
    try:
        for at, topic, message in journey(t0):
            await broker.publish(
                message.model_dump_json().encode(),
                f"{settings.topic_prefix}{topic}",
                key=key_of(message),
                timestamp_ms=at,
            )
    finally:
        await broker.stop()


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's environment; the root logger is restored after, since the CLI replaces its
    handlers with one bound to this test's captured stderr."""
    config = tmp_path / "waveline.yaml"
    config.write_text(yaml.safe_dump(make_config("file:///nowhere.git").model_dump(mode="json")))
    monkeypatch.setenv("WAVELINE_CONFIG", str(config))
    monkeypatch.setenv("WAVELINE_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("WAVELINE_TOPIC_PREFIX", settings.topic_prefix)
    loggers = [logging.getLogger(n) for n in ("", "aiokafka", "faststream", "waveline.faststream")]
    saved = [(lg, lg.level, lg.handlers[:]) for lg in loggers]
    yield
    for lg, level, handlers in saved:
        lg.setLevel(level)
        lg.handlers[:] = handlers


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


@pytest.mark.usefixtures("cli_env")
async def test_trace_prints_the_hops_in_order(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = int(time.time() * 1000) - 120_000
    await publish_journey(settings, t0)

    assert await cli("trace", APP_SHA) == 0
    out = capsys.readouterr().out
    hops = [
        "announced in app (1 service)",
        "introduce command → staging",
        f"committed on auto {C1[:10]} (staging)",
        f"check ci/validate success on {C1[:10]}",
        f"watched master fast-forwarded to {C1[:10]}",
        f"staging-us Synced/Healthy at {C1[:10]}",
        f"wave staging runs it at {C1[:10]}",
        "promote staging→internal requested",
        f"committed on auto {C2[:10]} (internal)",
        f"internal-us Synced/Healthy at {C9[:10]}",
        f"wave internal runs it at {C9[:10]}",
        "summary:",
        "announce → internal healthy (total)",
    ]
    positions = [out.index(h) for h in hops]
    assert positions == sorted(positions), out
    assert "prod-us" not in out  # the config says prod-us is not in a wave that runs it
    assert "+40 ms     +45 ms  committed on auto" in out

    assert await cli("trace", APP_SHA[:10], "--json", "--pipeline", "app") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["app_sha"] == APP_SHA and doc["announced"]
    by_hop = {h["hop"]: h for h in doc["hops"]}
    assert by_hop[f"wave staging runs it at {C1[:10]}"]["since_announce_ms"] == 5_300
    assert by_hop[f"wave staging runs it at {C1[:10]}"]["since_previous_ms"] == 100
    assert all(h["since_previous_ms"] >= 0 for h in doc["hops"])
    assert {s["hop"]: s["ms"] for s in doc["summary"]}["staging: committed → watched"] == 2_015

    # From a later --since the announcement is out of the window; the rest still shows.
    assert await cli("trace", APP_SHA, "--since", iso(t0 + 3_000)) == 0
    out = capsys.readouterr().out
    assert "announcement not in the window" in out
    assert "announced in" not in out and f"wave staging runs it at {C1[:10]}" in out


@pytest.mark.usefixtures("cli_env")
async def test_trace_of_an_unknown_set_exits_1(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await publish_journey(settings, int(time.time() * 1000) - 60_000)
    assert await cli("trace", "0123456789abcdef0123456789abcdef01234567") == 1
    err = capsys.readouterr().err
    assert "image set 0123456789abcdef0123456789abcdef01234567 not found" in err
    assert await cli("trace", APP_SHA, "--pipeline", "other") == 1
    assert "not found in pipeline other" in capsys.readouterr().err
    assert await cli("trace", APP_SHA, "--since", iso(int(time.time() * 1000) + 60_000)) == 1
    assert await cli("trace", "not-a-sha") == 1
    assert "invalid app_sha" in capsys.readouterr().err
