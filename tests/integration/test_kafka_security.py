"""Kafka over SASL_SSL, on a private broker of this module's own (never the suite's shared
one): a PLAINTEXT listener and a SASL_SSL listener whose TLS certificate comes from a
throwaway CA made here and whose SCRAM-SHA-512 user is created by Kafka's own storage tool.

A real service (the git-writer, started as ``waveline run`` starts it) consumes a command
and publishes its event through the SASL_SSL listener, and the CLI's clients (``topics``,
``replay``, ``trace``) read and write through it; a wrong password and a CA that did not sign
the broker's certificate are refused within seconds with a permanent, named error, and
nothing reaches git.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from secrets import token_hex
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from tests.infra import Infra
from tests.kafka_certs import Authority, make_authority, make_leaf
from tests.support import branch_log, introduce, running, wait_for
from waveline.cli import replay, topics, trace
from waveline.cli.serve import serve
from waveline.devstack import kafka
from waveline.devstack.paths import StackPaths
from waveline.shared import kafka_clients
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.db import migrate
from waveline.shared.errors import KafkaAccessRefused
from waveline.shared.outage import is_retriable
from waveline.shared.runtime import bootstrap
from waveline.shared.topic_admin import ensure_topics
from waveline.shared.topics import Topics

USER = "waveline-svc"
PASSWORD = "scram-" + token_hex(12)
WRONG_PASSWORD = "wrong-" + token_hex(12)
# A refusal must come this fast (aiokafka's bootstrap, then one diagnosing connection).
REFUSED_WITHIN_S = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SecureKafka:
    paths: StackPaths
    sasl_port: int
    ca: Authority
    other_ca: Authority

    def settings(self, **fields: Any) -> dict[str, Any]:
        """Settings fields for a client of the SASL_SSL listener trusting our CA."""
        return {
            "kafka_bootstrap": f"127.0.0.1:{self.sasl_port}",
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": USER,
            "kafka_sasl_password": SecretStr(PASSWORD),
            "kafka_ssl_cafile": self.ca.cert,
        } | fields


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """One private broker for the module: PLAINTEXT and SASL_SSL listeners."""
    pki = tmp_path_factory.mktemp("kafka-pki")
    ca = make_authority(pki, "kafka")
    other_ca = make_authority(pki, "other")
    broker_cert = make_leaf(ca, pki, "broker")
    shared = StackPaths.from_env()
    paths = StackPaths(
        root=shared.root,
        run=tmp_path_factory.mktemp("secure-kafka"),
        cache=shared.cache,
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        pg_port=0,
        http_port=0,
    )
    listener = kafka.SaslSslListener(
        port=free_port(), keystore=broker_cert.keystore, users={USER: PASSWORD}
    )
    kafka.start(paths, sasl_ssl=listener)
    try:
        yield SecureKafka(paths, listener.port, ca, other_ca)
    finally:
        kafka.stop(paths)


@pytest.fixture
async def secure(
    secure_kafka: SecureKafka, infra: Infra, tmp_path: Path
) -> AsyncIterator[Settings]:
    """This test's settings on the SASL_SSL listener (its own topics, created through it,
    and its own schema on the shared PostgreSQL)."""
    tag = token_hex(6)
    settings = Settings(
        **secure_kafka.settings(),
        database_url=infra.database_url,
        database_schema=f"t_{tag}",
        topic_prefix=f"t{tag}.",
        group_prefix=f"t{tag}.",
        data_dir=tmp_path / "data",
        http_port=0,
        publish_timeout_s=10.0,
    )
    async with asyncio.timeout(60):
        await ensure_topics(settings, Topics(settings.topic_prefix).all())
        await migrate(settings)
    try:
        yield settings
    finally:
        conn = await asyncpg.connect(infra.database_url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{settings.database_schema}" CASCADE')
        finally:
            await conn.close()


async def test_a_service_and_the_cli_work_through_sasl_ssl(
    secure: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    command = introduce(n=1)
    topics_of = Topics(secure.topic_prefix)
    producer = kafka_clients.producer(secure, acks="all")
    async with asyncio.timeout(60):
        await kafka_clients.start(producer, secure)
        try:
            await producer.send_and_wait(
                topics_of.git_commands, command.model_dump_json().encode(), key=b"cfg-app"
            )
        finally:
            await producer.stop()
        async with running(["git-writer"], secure, config, secrets):
            await wait_for(lambda: len(branch_log(str(remote), "auto")) == 2, what="the commit")
            events = await read_all(secure, topics_of.git_events, until=1)
    assert [(e["command_id"], e["outcome"]) for e in events] == [
        (str(command.command_id), "committed")
    ]
    # The CLI's clients through the same listener: topics (admin), replay (consumer and
    # producer), trace (admin and consumer).
    async with asyncio.timeout(60):
        assert await topics.ensure_and_compare(secure) == []
        report = await replay.replay(secure, "waveline.git.commands", from_offset=0)
        assert report.messages == 1
        observed = await trace.collect(secure, datetime.now(UTC) - timedelta(minutes=5))
        replayed = await read_all(secure, topics_of.git_commands, until=2)
    assert {base for _, base, _ in observed} >= {"waveline.git.commands", "waveline.git.events"}
    assert [c["command_id"] for c in replayed] == [str(command.command_id)] * 2


async def read_all(settings: Settings, topic: str, *, until: int) -> list[dict[str, Any]]:
    consumer = kafka_clients.consumer(
        settings, topic, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await kafka_clients.start(consumer, settings)
    found: list[dict[str, Any]] = []
    try:
        while len(found) < until:
            batch = await consumer.getmany(timeout_ms=200)
            found += [json.loads(r.value) for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    return found


async def refused_quickly(settings: Settings, config: WavelineConfig, secrets: Secrets) -> str:
    """Start a service (as ``waveline run`` does) and a CLI client on ``settings``; both
    must fail with ``KafkaAccessRefused`` within REFUSED_WITHIN_S. Returns the message."""
    runtime = bootstrap("git-writer", settings, config, secrets)
    started = time.monotonic()
    with pytest.raises(KafkaAccessRefused) as service:
        async with asyncio.timeout(REFUSED_WITHIN_S + 5):
            await serve(runtime, asyncio.Event())
    assert time.monotonic() - started < REFUSED_WITHIN_S
    await runtime.stop()
    started = time.monotonic()
    with pytest.raises(KafkaAccessRefused) as cli:
        async with asyncio.timeout(REFUSED_WITHIN_S + 5):
            await topics.ensure_and_compare(settings)
    assert time.monotonic() - started < REFUSED_WITHIN_S
    for refusal in (service.value, cli.value):
        assert refusal.retriable is False
        assert is_retriable(refusal) is False
    assert str(service.value) == str(cli.value)
    return str(service.value)


async def test_a_wrong_sasl_password_is_refused_at_once(
    secure_kafka: SecureKafka, secure: Settings, config: WavelineConfig, secrets: Secrets,
    remote: Path,
) -> None:  # fmt: skip
    wrong = secure.model_copy(update={"kafka_sasl_password": SecretStr(WRONG_PASSWORD)})
    text = await refused_quickly(wrong, config, secrets)
    assert f"refused SASL SCRAM-SHA-512 authentication as {USER}" in text
    assert "SaslAuthenticationFailed" in text
    assert WRONG_PASSWORD not in text and PASSWORD not in text
    assert branch_log(str(remote), "auto")[:-1] == []  # nothing reached git


async def test_a_broker_certificate_from_another_ca_is_refused_at_once(
    secure_kafka: SecureKafka, secure: Settings, config: WavelineConfig, secrets: Secrets,
    remote: Path,
) -> None:  # fmt: skip
    untrusting = secure.model_copy(update={"kafka_ssl_cafile": secure_kafka.other_ca.cert})
    text = await refused_quickly(untrusting, config, secrets)
    assert "its TLS certificate is not trusted" in text
    assert str(secure_kafka.other_ca.cert) in text
    assert branch_log(str(remote), "auto")[:-1] == []


async def test_the_cli_says_why_and_exits_2(secure_kafka: SecureKafka, tmp_path: Path) -> None:
    """``waveline topics`` as an operator runs it, with a wrong password in the env."""
    fields = secure_kafka.settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAVELINE_")} | {
        "WAVELINE_KAFKA_BOOTSTRAP": fields["kafka_bootstrap"],
        "WAVELINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "WAVELINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "WAVELINE_KAFKA_SASL_USERNAME": USER,
        "WAVELINE_KAFKA_SASL_PASSWORD": WRONG_PASSWORD,
        "WAVELINE_KAFKA_SSL_CAFILE": str(secure_kafka.ca.cert),
        "WAVELINE_TOPIC_PREFIX": f"t{token_hex(6)}.",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "waveline", "topics", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(REFUSED_WITHIN_S + 10):
        out, err = await proc.communicate()
    assert proc.returncode == 2, (out, err)
    assert b"refused SASL SCRAM-SHA-512 authentication" in err
    assert WRONG_PASSWORD.encode() not in out + err
