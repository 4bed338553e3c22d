"""``waveline topics``: create the topics with the replication settings and report the
existing ones whose layout differs.

Exit status: 0 when every topic is as the settings ask; 3 when an existing topic differs
(0 with ``--warn-only``); 2 when Kafka refuses the settings (e.g. more replicas than
brokers, through ``ConfigError``); 1 when Kafka is unavailable. Missing topics are always
created first, so a difference never stops the creation of the others.
"""

from __future__ import annotations

import asyncio
import sys

from waveline.shared.config import Settings
from waveline.shared.errors import BrokerUnavailable
from waveline.shared.topic_admin import ensure_topics, topic_differences
from waveline.shared.topics import Difference, Topics

DIFFERS = 3


async def ensure_and_compare(settings: Settings) -> list[Difference]:
    """Create the missing topics of ``settings`` and return how existing ones differ."""
    topics = Topics(settings.topic_prefix).all()
    await ensure_topics(
        settings,
        topics,
        replication_factor=settings.topic_replication_factor,
        min_insync_replicas=settings.topic_min_insync_replicas,
    )
    return await topic_differences(
        settings,
        topics,
        replication_factor=settings.topic_replication_factor,
        min_insync_replicas=settings.topic_min_insync_replicas,
    )


def run(settings: Settings, *, warn_only: bool) -> int:
    try:
        found = asyncio.run(ensure_and_compare(settings))
    except BrokerUnavailable as exc:
        print(f"waveline topics: {exc}", file=sys.stderr)
        return 1
    count = len(Topics(settings.topic_prefix).all())
    print(
        f"{count} topics present on {settings.kafka_bootstrap} (wanted: replication factor "
        f"{settings.topic_replication_factor}, min.insync.replicas "
        f"{settings.topic_min_insync_replicas})"
    )
    if not found:
        return 0
    print(f"{len(found)} setting(s) of existing topics differ from the settings:")
    for difference in found:
        print(f"  {difference}")
    print("waveline changes no existing topic; docs/reliability.md (Replication) says how to.")
    return 0 if warn_only else DIFFERS
