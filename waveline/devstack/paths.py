"""Where the local stack lives and which loopback ports it uses (overridable by env)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

KAFKA_VERSION = "3.9.1"
# The services besides ingest (which serves its health paths on the API port), in the order
# of their health ports.
CONSUMERS = ("git-writer", "status-tracker", "promoter", "notifier", "reconciler")


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "deploy").is_dir():
            return parent
    return Path.cwd()


@dataclass(frozen=True)
class StackPaths:
    root: Path
    run: Path
    cache: Path
    kafka_port: int
    kafka_controller_port: int
    pg_port: int
    http_port: int
    # The consumers' health endpoints (/healthz, /readyz) take this port and the next three.
    health_port: int = 8081

    @classmethod
    def from_env(cls) -> StackPaths:
        root = _repo_root()
        env = os.environ
        http_port = int(env.get("WAVELINE_HTTP_PORT", "8080"))
        return cls(
            root=root,
            run=Path(env.get("WAVELINE_DEV_DIR", root / ".run")).resolve(),
            cache=Path(env.get("WAVELINE_DEV_CACHE", root / ".cache")).resolve(),
            kafka_port=int(env.get("WAVELINE_DEV_KAFKA_PORT", "9092")),
            kafka_controller_port=int(env.get("WAVELINE_DEV_KAFKA_CONTROLLER_PORT", "9093")),
            pg_port=int(env.get("WAVELINE_DEV_PG_PORT", "55432")),
            http_port=http_port,
            # After ingest's by default: a stack moved to other ports moves these too.
            health_port=int(env.get("WAVELINE_DEV_HEALTH_PORT", str(http_port + 1))),
        )

    def health_port_of(self, service: str) -> int:
        """Where a consumer service serves /healthz and /readyz on the local stack."""
        return self.health_port + CONSUMERS.index(service)

    @property
    def logs(self) -> Path:
        return self.run / "logs"

    @property
    def pids(self) -> Path:
        return self.run / "pids"

    @property
    def kafka_libs(self) -> Path:
        return self.cache / "kafka" / KAFKA_VERSION / "libs"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def database_url(self) -> str:
        return f"postgresql://waveline@127.0.0.1:{self.pg_port}/waveline"
