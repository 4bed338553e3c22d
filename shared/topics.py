"""Topic names and partition counts (README.md, Architecture).

A prefix (``WAVELINE_TOPIC_PREFIX``) lets each test run use its own topics on a shared broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# git.commands is keyed by repo: more partitions let more git-writers share many repos.
PARTITIONS: dict[str, int] = {
    "waveline.images": 6,
    "waveline.checks": 6,
    "waveline.deploys": 6,
    "waveline.operator": 3,
    "waveline.git.commands": 8,
    "waveline.git.events": 6,
    "waveline.waves": 6,
    "waveline.promotions": 6,
    "waveline.pulls": 3,
    "waveline.dlq": 3,
}


@dataclass(frozen=True)
class Topics:
    prefix: str = ""

    def name(self, base: str) -> str:
        if base not in PARTITIONS:
            raise KeyError(f"unknown topic {base!r}")
        return f"{self.prefix}{base}"

    @property
    def images(self) -> str:
        return self.name("waveline.images")

    @property
    def checks(self) -> str:
        return self.name("waveline.checks")

    @property
    def deploys(self) -> str:
        return self.name("waveline.deploys")

    @property
    def operator(self) -> str:
        return self.name("waveline.operator")

    @property
    def git_commands(self) -> str:
        return self.name("waveline.git.commands")

    @property
    def git_events(self) -> str:
        return self.name("waveline.git.events")

    @property
    def waves(self) -> str:
        return self.name("waveline.waves")

    @property
    def promotions(self) -> str:
        return self.name("waveline.promotions")

    @property
    def pulls(self) -> str:
        return self.name("waveline.pulls")

    @property
    def dlq(self) -> str:
        return self.name("waveline.dlq")

    def all(self) -> dict[str, int]:
        return {f"{self.prefix}{base}": n for base, n in PARTITIONS.items()}


@dataclass(frozen=True)
class TopicLayout:
    """What a topic looks like: its partitions, replicas per partition (the fewest any
    partition has, when they differ) and its effective ``min.insync.replicas``."""

    partitions: int
    replication_factor: int
    min_insync_replicas: int


@dataclass(frozen=True)
class Difference:
    """One setting of an existing topic that is not what the settings ask for."""

    topic: str
    setting: str  # "partitions", "replication factor" or "min.insync.replicas"
    wanted: int
    actual: int

    def __str__(self) -> str:
        return f"{self.topic}: {self.setting} is {self.actual}, the settings want {self.wanted}"


def differences(
    wanted: Mapping[str, TopicLayout], actual: Mapping[str, TopicLayout]
) -> list[Difference]:
    """Every setting in which an existing topic differs from what is wanted, in topic order.
    Topics missing from ``actual`` are not differences (creating them is ensure's job)."""
    found: list[Difference] = []
    for topic in sorted(wanted):
        have = actual.get(topic)
        if have is None:
            continue
        want = wanted[topic]
        for setting, w, a in (
            ("partitions", want.partitions, have.partitions),
            ("replication factor", want.replication_factor, have.replication_factor),
            ("min.insync.replicas", want.min_insync_replicas, have.min_insync_replicas),
        ):
            if w != a:
                found.append(Difference(topic, setting, w, a))
    return found
