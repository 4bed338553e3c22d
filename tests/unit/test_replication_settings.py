"""Replication settings and the rule that compares topic layouts (no services)."""

from __future__ import annotations

import pytest

from waveline.shared.config import Settings, load_settings
from waveline.shared.errors import ConfigError
from waveline.shared.kafka import make_broker
from waveline.shared.topics import Difference, TopicLayout, differences


def test_defaults_suit_the_one_node_dev_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WAVELINE_TOPIC_REPLICATION_FACTOR", raising=False)
    monkeypatch.delenv("WAVELINE_TOPIC_MIN_INSYNC_REPLICAS", raising=False)
    settings = load_settings()
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (1, 1)


def test_cluster_values_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVELINE_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("WAVELINE_TOPIC_MIN_INSYNC_REPLICAS", "2")
    settings = load_settings()
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)


@pytest.mark.parametrize(("factor", "insync"), [("1", "2"), ("2", "3")])
def test_min_insync_above_the_replication_factor_is_refused(
    monkeypatch: pytest.MonkeyPatch, factor: str, insync: str
) -> None:
    monkeypatch.setenv("WAVELINE_TOPIC_REPLICATION_FACTOR", factor)
    monkeypatch.setenv("WAVELINE_TOPIC_MIN_INSYNC_REPLICAS", insync)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert (
        f"WAVELINE_TOPIC_MIN_INSYNC_REPLICAS ({insync}) must not exceed "
        f"WAVELINE_TOPIC_REPLICATION_FACTOR ({factor})"
    ) in str(refused.value)


@pytest.mark.parametrize("variable", ["TOPIC_REPLICATION_FACTOR", "TOPIC_MIN_INSYNC_REPLICAS"])
def test_zero_replicas_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(f"WAVELINE_{variable}", "0")
    with pytest.raises(ConfigError, match=variable.lower()):
        load_settings()


def test_producers_are_configured_for_acks_all_and_idempotence() -> None:
    broker = make_broker(Settings(), "unit")
    kwargs = broker._connection_kwargs
    assert kwargs["acks"] == "all"
    assert kwargs["enable_idempotence"] is True


def layout(partitions: int = 6, factor: int = 3, insync: int = 2) -> TopicLayout:
    return TopicLayout(partitions, factor, insync)


def test_no_differences_when_every_topic_matches() -> None:
    wanted = {"a": layout(), "b": layout(partitions=8)}
    assert differences(wanted, dict(wanted)) == []


def test_each_differing_setting_is_named() -> None:
    wanted = {"a": layout(), "b": layout(), "c": layout()}
    actual = {
        "a": layout(factor=1, insync=1),
        "b": layout(partitions=3),
        "c": layout(),
    }
    assert differences(wanted, actual) == [
        Difference("a", "replication factor", wanted=3, actual=1),
        Difference("a", "min.insync.replicas", wanted=2, actual=1),
        Difference("b", "partitions", wanted=6, actual=3),
    ]
    assert str(differences(wanted, actual)[0]) == (
        "a: replication factor is 1, the settings want 3"
    )


def test_missing_topics_are_not_differences() -> None:
    assert differences({"a": layout()}, {}) == []


def test_a_pool_smaller_at_start_than_at_most_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAVELINE_DATABASE_POOL_MIN_SIZE", "6")
    monkeypatch.setenv("WAVELINE_DATABASE_POOL_MAX_SIZE", "5")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "WAVELINE_DATABASE_POOL_MIN_SIZE (6) must not exceed" in str(refused.value)
    monkeypatch.delenv("WAVELINE_DATABASE_POOL_MIN_SIZE")
    monkeypatch.delenv("WAVELINE_DATABASE_POOL_MAX_SIZE")
    settings = load_settings()
    assert settings.database_pool_min_size == settings.database_pool_max_size == 5
