"""Prometheus metrics of one ingest app (own registry, so tests can build many apps)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class IngestMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "waveline_ingest_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.accept_seconds = Histogram(
            "waveline_ingest_accept_seconds",
            "Time from request to Kafka acknowledgement for accepted events",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.published = Counter(
            "waveline_ingest_published",
            "Events acknowledged by Kafka, by topic",
            ["topic"],
            registry=self.registry,
        )
        self.connections_open = Gauge(
            "waveline_ingest_connections_open", "Open HTTP connections", registry=self.registry
        )
        self.connections_refused = Counter(
            "waveline_ingest_connections_refused",
            "Connections closed at once because WAVELINE_HTTP_MAX_CONNECTIONS were open",
            registry=self.registry,
        )
        self.head_timeouts = Counter(
            "waveline_ingest_head_timeouts",
            "Connections closed because a request head (or the rest of a refused body) did"
            " not arrive within WAVELINE_HTTP_HEADER_TIMEOUT_S",
            registry=self.registry,
        )
