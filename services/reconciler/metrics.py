"""The reconciler's metrics, on its ``/metrics`` (the runtime's registry).

Verdicts learned by webhook are ingest's ``waveline_ingest_requests_total{route="github"}``
and ``waveline_ingest_published_total{topic}``; ``waveline_reconcile_learned_total`` counts
those learned by polling, so the two side by side say how much the webhooks lose.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from waveline.shared.runtime import Runtime


class ReconcilerMetrics:
    def __init__(self, runtime: Runtime) -> None:
        registry = runtime.waits.registry
        self.calls = Counter(
            "waveline_reconcile_calls_total",
            "Calls to the forge (api=github) and the deployers (api=deployer), by outcome:"
            " changed, not_modified (a free 304), rate_limited, error, ok",
            ["api", "outcome"],
            registry=registry,
        )
        self.budget_remaining = Gauge(
            "waveline_reconcile_budget_remaining",
            "The forge's rate-limit budget left (X-RateLimit-Remaining), per repo",
            ["repo"],
            registry=registry,
        )
        self.learned = Counter(
            "waveline_reconcile_learned_total",
            "Reports published by polling: check verdicts the status-tracker did not hold"
            " (kind=check), deploy reports read from a deployer (kind=deploy)",
            ["kind"],
            registry=registry,
        )
        self.rounds_failed = Counter(
            "waveline_reconcile_rounds_failed_total",
            "Polling rounds that failed (the database or Kafka away); the next round retries",
            ["kind"],
            registry=registry,
        )
