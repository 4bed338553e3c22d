"""Where the tests' Kafka and PostgreSQL come from (session-wide).

1. ``WAVELINE_KAFKA_BOOTSTRAP`` and ``WAVELINE_DATABASE_URL`` when both are set;
2. else testcontainers, when a Docker engine answers;
3. else the local stack (``waveline.devstack``), started here if it is not running and
   stopped again at the end if this session started it.

A missing broker is a failure, never a skip: the real-service suites always run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Infra:
    bootstrap: str
    database_url: str
    source: str


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def _testcontainers() -> Iterator[Infra]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    with (
        KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as kafka,
        PostgresContainer("postgres:15", driver=None) as pg,
    ):
        yield Infra(kafka.get_bootstrap_server(), pg.get_connection_url(), "testcontainers")


@contextlib.contextmanager
def _local_stack() -> Iterator[Infra]:
    from waveline.devstack import kafka, postgres
    from waveline.devstack.paths import StackPaths
    from waveline.devstack.procs import port_open

    paths = StackPaths.from_env()
    if port_open(paths.kafka_port) and port_open(paths.pg_port):
        # A stack from another checkout (or `make up`) already serves these ports: share it;
        # every test uses its own topics, groups and schema anyway.
        yield Infra(paths.bootstrap, paths.database_url, "running local stack")
        return
    started_kafka = kafka.start(paths)
    started_pg = postgres.start(paths)
    try:
        yield Infra(paths.bootstrap, paths.database_url, "local stack")
    finally:
        if started_kafka:
            kafka.stop(paths)
        if started_pg:
            postgres.stop(paths)


@contextlib.contextmanager
def provide() -> Iterator[Infra]:
    bootstrap = os.environ.get("WAVELINE_KAFKA_BOOTSTRAP")
    database_url = os.environ.get("WAVELINE_DATABASE_URL")
    if bootstrap and database_url:
        yield Infra(bootstrap, database_url, "environment")
    elif _docker_answers():
        with _testcontainers() as infra:
            yield infra
    else:
        with _local_stack() as infra:
            yield infra
