"""Topic administration: create Waveline's topics with the replication settings, wait until
they are led, and report existing topics whose layout differs (``waveline topics``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from waveline.shared import kafka_clients
from waveline.shared.errors import BrokerUnavailable, ConfigError
from waveline.shared.kafka_clients import KafkaTarget, bootstrap_of
from waveline.shared.topics import Difference, TopicLayout, differences

logger = logging.getLogger(__name__)

# The one topic config Waveline sets; the report compares its effective value.
MIN_INSYNC = "min.insync.replicas"


def _admin(kafka: KafkaTarget) -> AIOKafkaAdminClient:
    return kafka_clients.admin(kafka, request_timeout_ms=10_000)


async def ensure_topics(
    kafka: KafkaTarget,
    topics: dict[str, int],
    *,
    replication_factor: int = 1,
    min_insync_replicas: int = 1,
    timeout_s: float = 30.0,
) -> None:
    """Create missing topics (on the Kafka of ``kafka``: the settings, or a bare
    PLAINTEXT bootstrap address) with the given partition counts, ``replication_factor``
    replicas each and the topic config ``min.insync.replicas``, then wait until every
    partition of every topic has a leader. Existing topics are left alone
    (``topic_differences`` says how they differ).

    ``ConfigError`` when the cluster refuses the settings (more replicas than brokers, a
    config it rejects) or refuses the client (``KafkaAccessRefused``): at once, never a
    wait. ``BrokerUnavailable`` when Kafka does not answer, or does not lead the
    partitions, within ``timeout_s``."""
    if min_insync_replicas > replication_factor:
        raise ConfigError(
            f"min.insync.replicas ({min_insync_replicas}) exceeds the replication factor "
            f"({replication_factor})"
        )
    bootstrap = bootstrap_of(kafka)
    admin = _admin(kafka)
    try:
        async with asyncio.timeout(timeout_s):
            await kafka_clients.start(admin, kafka)
            try:
                existing = set(await admin.list_topics())
                missing = [
                    NewTopic(
                        name=name,
                        num_partitions=parts,
                        replication_factor=replication_factor,
                        topic_configs={MIN_INSYNC: str(min_insync_replicas)},
                    )
                    for name, parts in topics.items()
                    if name not in existing
                ]
                if missing:
                    response = await admin.create_topics(missing)
                    _raise_refusals(response.to_object(), replication_factor, min_insync_replicas)
                    logger.info(
                        "created topics %s (replication factor %d, min.insync.replicas %d)",
                        [t.name for t in missing],
                        replication_factor,
                        min_insync_replicas,
                    )
                # A restarted broker answers before it has loaded every partition; until
                # then produces fail with NotLeaderForPartition. Ready means every one led.
                while not await _all_led(admin, list(topics)):  # noqa: ASYNC110 (polls the broker)
                    await asyncio.sleep(0.2)
            finally:
                await admin.close()
    except TimeoutError as exc:
        raise BrokerUnavailable(
            f"Kafka at {bootstrap} did not create and lead {len(topics)} topics "
            f"within {timeout_s:.0f}s"
        ) from exc
    except kafka_errors.KafkaError as exc:
        raise BrokerUnavailable(f"Kafka at {bootstrap} is unavailable: {exc!r}") from exc


def _raise_refusals(response: dict[str, Any], replication_factor: int, min_insync: int) -> None:
    """aiokafka returns CreateTopics' per-topic error codes instead of raising them."""
    refused: list[tuple[str, type[kafka_errors.BrokerResponseError], str]] = []
    for entry in response.get("topic_errors", []):
        code = entry.get("error_code", 0)
        # A concurrent creator may win the race: the topic is there either way.
        if code in (0, kafka_errors.TopicAlreadyExistsError.errno):
            continue
        error = kafka_errors.for_code(code)
        refused.append((entry["topic"], error, entry.get("error_message") or error.description))
    if not refused:
        return
    names = sorted(topic for topic, _, _ in refused)
    reasons = sorted({f"{error.message}: {why}" for _, error, why in refused})
    text = (
        f"Kafka refused to create {len(names)} topic(s) ({', '.join(names[:3])}"
        f"{', ...' if len(names) > 3 else ''}) with replication factor {replication_factor} "
        f"and min.insync.replicas {min_insync} (WAVELINE_TOPIC_REPLICATION_FACTOR, "
        f"WAVELINE_TOPIC_MIN_INSYNC_REPLICAS): {'; '.join(reasons)}"
    )
    if all(error.retriable for _, error, _ in refused):
        raise BrokerUnavailable(text)
    raise ConfigError(text)


async def _all_led(admin: AIOKafkaAdminClient, topics: list[str]) -> bool:
    described = await admin.describe_topics(topics)
    return len(described) == len(topics) and all(
        entry.get("error_code", 0) == 0
        and entry.get("partitions")
        and all(
            p.get("leader", -1) >= 0 and p.get("error_code", 0) == 0 for p in entry["partitions"]
        )
        for entry in described
    )


async def describe_topics(
    kafka: KafkaTarget, names: list[str], *, timeout_s: float = 30.0
) -> dict[str, TopicLayout]:
    """The layout of each of ``names`` that exists (missing topics are left out)."""
    bootstrap = bootstrap_of(kafka)
    admin = _admin(kafka)
    try:
        async with asyncio.timeout(timeout_s):
            await kafka_clients.start(admin, kafka)
            try:
                described = await admin.describe_topics(names)
                replicas = {
                    entry["topic"]: (
                        len(entry["partitions"]),
                        min(len(p.get("replicas", [])) for p in entry["partitions"]),
                    )
                    for entry in described
                    if entry.get("error_code", 0) == 0 and entry.get("partitions")
                }
                if not replicas:
                    return {}
                answers = await admin.describe_configs(
                    [
                        ConfigResource(ConfigResourceType.TOPIC, name, {MIN_INSYNC: None})
                        for name in sorted(replicas)
                    ]
                )
            finally:
                await admin.close()
    except TimeoutError as exc:
        raise BrokerUnavailable(f"Kafka at {bootstrap} did not describe topics") from exc
    except kafka_errors.KafkaError as exc:
        raise BrokerUnavailable(f"Kafka at {bootstrap} is unavailable: {exc!r}") from exc
    insync = _min_insync_of(answers)
    return {
        name: TopicLayout(parts, factor, insync[name])
        for name, (parts, factor) in replicas.items()
        if name in insync
    }


def _min_insync_of(answers: list[Any]) -> dict[str, int]:
    found: dict[str, int] = {}
    for answer in answers:
        for resource in answer.to_object().get("resources", []):
            if resource.get("error_code", 0) != 0:
                continue
            for entry in resource.get("config_entries", []):
                # aiokafka names the field config_names in every DescribeConfigs version.
                name = entry.get("config_names", entry.get("config_name"))
                if name == MIN_INSYNC and entry.get("config_value") is not None:
                    found[resource["resource_name"]] = int(entry["config_value"])
    return found


async def topic_differences(
    kafka: KafkaTarget,
    topics: dict[str, int],
    *,
    replication_factor: int,
    min_insync_replicas: int,
    timeout_s: float = 30.0,
) -> list[Difference]:
    """How the existing ones of ``topics`` (name → partitions) differ from the wanted
    partitions, replication factor and ``min.insync.replicas``."""
    wanted = {
        name: TopicLayout(parts, replication_factor, min_insync_replicas)
        for name, parts in topics.items()
    }
    actual = await describe_topics(kafka, sorted(topics), timeout_s=timeout_s)
    return differences(wanted, actual)


async def partitions_of(kafka: KafkaTarget, topic: str) -> list[int]:
    """Partition ids of ``topic`` (empty when it does not exist)."""
    admin = _admin(kafka)
    await kafka_clients.start(admin, kafka)
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for entry in described:
        if entry.get("topic") == topic and entry.get("error_code", 0) == 0:
            return sorted(p["partition"] for p in entry.get("partitions", []))
    return []
