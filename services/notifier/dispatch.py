"""The webhook strategy's ``repository_dispatch`` format: a promotion triggers a GitHub
Actions workflow of the ops repository (docs/github.md, deploy/github/promote-dispatch.yaml).

The delivery's body is ``{"event_type", "client_payload"}``, where ``client_payload`` is
exactly the ``data`` of the CloudEvents format (promotion id, pipeline, waves, app sha,
images, config commit, the trailers the workflow's commit carries, and ``result_url``):
nine top-level properties, within GitHub's ten. It is built once and stored, so every retry
sends the same bytes. The workflow commits with the trailers, pushes, and reports back on
``result_url`` as any webhook receiver does; the promoter then has git-writer re-align
``auto`` on the new ``watched`` and read the trailers.

Sending goes through ``GitHubForge.repository_dispatch`` with the repo's forge credentials
(its App's installation token, or its token); GitHub answers 204. Every outcome is an
``Attempt`` as for an HTTP webhook, so the worker's retries and dead letters apply alike.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from waveline.services.notifier.cloudevents import canonical_json
from waveline.services.notifier.http import Attempt, Outcome
from waveline.services.notifier.store import NewDelivery
from waveline.services.notifier.targets import strategy_key
from waveline.shared.config import Secrets, WavelineConfig
from waveline.shared.forge.base import ForgeError
from waveline.shared.forge.github import GitHubForge
from waveline.shared.forge.github_app import token_source
from waveline.shared.models.promotions import PromotionEvent

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/json"
EVENT_TYPE = "io.waveline.promotion.dispatch"  # the delivery's kind, as listed in its log
_MAX_ERROR = 300


@dataclass
class DispatchTarget:
    """Where one wave's dispatches go: ``repository`` through ``forge``."""

    repository: str
    event_type: str
    forge: GitHubForge
    timeout_s: float = 10.0


def dispatch_targets(config: WavelineConfig, secrets: Secrets) -> dict[str, DispatchTarget]:
    """One target per wave promoted by ``repository_dispatch``, keyed like the webhook
    strategy's (``pipeline/wave``). Raises ``ConfigError`` when the forge's credential is
    not set or unusable (the notifier stops at start, naming it)."""
    timeout_s = config.delivery.timeout.total_seconds()
    forges: dict[tuple[str, str], GitHubForge] = {}
    found: dict[str, DispatchTarget] = {}
    for name, pipeline in config.pipelines.items():
        for wave in pipeline.waves:
            strategy = pipeline.strategy_of(wave.name)
            if strategy.kind != "webhook" or strategy.format != "repository_dispatch":
                continue
            repo = config.repos[pipeline.repo]
            assert repo.forge is not None  # WavelineConfig checks it at load
            repository = strategy.dispatch.repository or repo.full_name()
            # One client (and one App token cache) per repository it dispatches to.
            forge = forges.get((pipeline.repo, repository))
            if forge is None:
                tokens = token_source(pipeline.repo, repo, secrets, repository=repository)
                forge = GitHubForge(repo.forge.api_url, token=tokens, timeout_s=timeout_s)
                forges[(pipeline.repo, repository)] = forge
            found[strategy_key(name, wave.name)] = DispatchTarget(
                repository=repository,
                event_type=strategy.dispatch.event_type_for(name, wave.name),
                forge=forge,
                timeout_s=timeout_s,
            )
    return found


def dispatch_delivery(
    event: PromotionEvent, data: dict[str, Any], event_type: str, source_topic: str
) -> NewDelivery:
    """The stored delivery of a ``requested`` promotion to a dispatch wave: ``data`` (the
    CloudEvents format's, see events.promotion_data) as ``client_payload``."""
    body = canonical_json({"event_type": event_type, "client_payload": data})
    return NewDelivery(
        delivery_id=event.promotion_id,
        kind="promotion",
        target=strategy_key(event.pipeline, event.to_wave),
        pipeline=event.pipeline,
        promotion_id=event.promotion_id,
        event_type=EVENT_TYPE,
        source_topic=source_topic,
        body=body,
        content_type=CONTENT_TYPE,
    )


def payload_data(body: bytes) -> dict[str, Any]:
    """The promotion's data in a stored body of either format (CloudEvent or dispatch)."""
    doc = json.loads(body)
    data = doc["data"] if "data" in doc else doc["client_payload"]
    assert isinstance(data, dict)
    return data


async def send_dispatch(target: DispatchTarget, body: bytes) -> Attempt:
    """One ``repository_dispatch`` call with the stored ``body``; never raises for a failed
    delivery. Retriable forge errors (no answer, 5xx, 429, rate limits) are ``retry``,
    others (401, 403, 404, 422) ``give_up``."""
    doc = json.loads(body)
    started = time.perf_counter()
    try:
        await target.forge.repository_dispatch(
            target.repository, doc["event_type"], doc["client_payload"]
        )
    except ForgeError as exc:
        elapsed = (time.perf_counter() - started) * 1000
        outcome: Outcome = "retry" if exc.retriable else "give_up"
        attempt = Attempt(outcome, exc.status, elapsed, str(exc)[:_MAX_ERROR])
    else:
        attempt = Attempt("delivered", 204, (time.perf_counter() - started) * 1000)
    logger.info(
        "repository_dispatch %s to %s: %s (%s) in %.0f ms",
        doc["event_type"],
        target.repository,
        attempt.outcome,
        attempt.status if attempt.status is not None else attempt.error,
        attempt.latency_ms,
    )
    return attempt
