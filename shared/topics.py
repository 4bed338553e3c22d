"""Topic names and partition counts (DESIGN §1).

A prefix (``WAVELINE_TOPIC_PREFIX``) lets each test run use its own topics on a shared broker.
"""

from __future__ import annotations

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
