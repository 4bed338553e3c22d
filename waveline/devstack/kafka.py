"""A single-node Kafka in KRaft mode (combined broker+controller) on loopback.

The jars come from Maven Central through Maven (``deploy/local/kafka-pom.xml``) and are
cached under ``.cache/kafka/<version>/libs``, so only the first ``make up`` downloads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from waveline.devstack import pidlock, procs
from waveline.devstack.paths import KAFKA_VERSION, StackPaths

_LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.BrokerServer=INFO
log4j.logger.kafka.server.ControllerServer=INFO
"""


@dataclass(frozen=True)
class SaslSslListener:
    """A SASL_SSL listener beside the PLAINTEXT one (the Kafka security tests start a
    private broker with one): TLS from a PEM keystore, SCRAM users created when the storage
    is formatted (``--add-scram``, so only on a broker's first start)."""

    port: int
    # PEM: the broker's private key (unencrypted PKCS#8) followed by its certificate chain.
    keystore: Path
    users: Mapping[str, str] = field(default_factory=dict)  # SCRAM user name -> password
    mechanism: str = "SCRAM-SHA-512"

    def properties(self) -> list[str]:
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        prefix = "listener.name.sasl_ssl"
        return [
            f"sasl.enabled.mechanisms={self.mechanism}",
            f"{prefix}.{self.mechanism.lower()}.sasl.jaas.config={jaas}",
            f"{prefix}.ssl.keystore.type=PEM",
            f"{prefix}.ssl.keystore.location={self.keystore}",
            f"{prefix}.ssl.client.auth=none",
        ]

    def format_args(self) -> list[str]:
        return [
            arg
            for name, password in self.users.items()
            for arg in ("--add-scram", f"{self.mechanism}=[name={name},password={password}]")
        ]


def ensure_jars(paths: StackPaths) -> None:
    marker = paths.kafka_libs / ".complete"
    if marker.exists():
        return
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed to fetch the Kafka jars: apt-get install maven")
    paths.kafka_libs.mkdir(parents=True, exist_ok=True)
    print(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central ...", flush=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(paths.root / "deploy" / "local" / "kafka-pom.xml"),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={paths.kafka_libs}",
            "-DincludeScope=runtime",
        ],
        check=True,
    )
    marker.write_text(KAFKA_VERSION)


def _properties(paths: StackPaths, sasl_ssl: SaslSslListener | None = None) -> str:
    data = paths.run / "kafka" / "data"
    secure = f"SASL_SSL://127.0.0.1:{sasl_ssl.port}," if sasl_ssl else ""
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{paths.kafka_controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{paths.kafka_port},{secure}"
            f"CONTROLLER://127.0.0.1:{paths.kafka_controller_port}",
            f"advertised.listeners={secure}PLAINTEXT://127.0.0.1:{paths.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            + (",SASL_SSL:SASL_SSL" if sasl_ssl else ""),
            *(sasl_ssl.properties() if sasl_ssl else []),
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=168",
            "",
        ]
    )


def _java(paths: StackPaths) -> list[str]:
    log4j = paths.run / "kafka" / "log4j.properties"
    return [
        shutil.which("java") or "java",
        "-Xms256m",
        "-Xmx768m",
        "-XX:+UseG1GC",
        f"-Dlog4j.configuration=file:{log4j}",
        "-cp",
        f"{paths.kafka_libs}/*",
    ]


def _adopt(paths: StackPaths) -> int | None:
    """A broker running on this stack's server.properties whose pid file went missing: its
    pid, recorded again."""
    wanted = str(paths.run / "kafka" / "server.properties").encode()
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = entry.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kafka.Kafka" in argv and wanted in argv:
            pid = int(entry.parent.name)
            info = pidlock.proc_info(pid)
            if info is not None and info.state not in ("Z", "X"):
                paths.pids.mkdir(parents=True, exist_ok=True)
                (paths.pids / "kafka.pid").write_text(pidlock.pidfile_text(pid))
                return pid
    return None


def start(paths: StackPaths, *, sasl_ssl: SaslSslListener | None = None) -> bool:
    """Start the broker unless it runs; returns True when it was started now. A pid file
    naming a dead, zombie or reused pid does not count as running (procs.pid_of). Kafka's
    own ``.lock`` in its log directory is an OS file lock, released when its holder dies.
    ``sasl_ssl`` adds that listener (default: the PLAINTEXT one alone)."""
    with procs.exclusive(paths.run / "kafka" / "start.lock"):
        return _start(paths, sasl_ssl)


def _start(paths: StackPaths, sasl_ssl: SaslSslListener | None = None) -> bool:
    pidfile = paths.pids / "kafka.pid"
    if procs.pid_of(pidfile) is not None or _adopt(paths) is not None:
        procs.wait_port(paths.kafka_port, 60, "Kafka", paths.logs / "kafka.log")
        return False
    if procs.port_open(paths.kafka_port):
        raise RuntimeError(f"port {paths.kafka_port} is taken by something that is not our Kafka")
    ensure_jars(paths)
    home = paths.run / "kafka"
    (home / "data").mkdir(parents=True, exist_ok=True)
    (home / "server.properties").write_text(_properties(paths, sasl_ssl))
    (home / "log4j.properties").write_text(_LOG4J)
    if not (home / "data" / "meta.properties").exists():
        subprocess.run(
            [
                *_java(paths),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                str(uuid.uuid4()),
                "-c",
                str(home / "server.properties"),
                *(sasl_ssl.format_args() if sasl_ssl else []),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    procs.start(
        [*_java(paths), "kafka.Kafka", str(home / "server.properties")],
        pidfile=pidfile,
        logfile=paths.logs / "kafka.log",
        env=os.environ,
        cwd=home,
    )
    procs.wait_port(paths.kafka_port, 90, "Kafka", paths.logs / "kafka.log")
    if sasl_ssl is not None:
        procs.wait_port(sasl_ssl.port, 90, "Kafka (SASL_SSL)", paths.logs / "kafka.log")
    return True


def stop(paths: StackPaths) -> bool:
    if procs.pid_of(paths.pids / "kafka.pid") is None:
        _adopt(paths)
    return procs.stop(paths.pids / "kafka.pid", timeout_s=30)
