"""What the reconciler publishes is what ingest publishes for the webhook of the same fact:
the same fields and the same event id, so deduplication by meaning and the trusted-reporter
rule cannot tell polling from a webhook (docs/reconcile.md)."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import Any

from waveline.services.ingest import webhooks
from waveline.services.ingest.payloads import ArgoReport
from waveline.services.reconciler.checks import check_report
from waveline.shared.config import WavelineConfig
from waveline.shared.deploy_sources import REPORT_NS, deploy_report
from waveline.shared.forge.github_checks import parse_check_runs, parse_statuses

SHA = "b" * 40
CONFIG = WavelineConfig.model_validate(
    {
        "repos": {
            "cfg": {
                "url": "https://github.com/acme/cfg.git",
                "required_checks": ["ci/validate", {"name": "build", "app": "ci-app"}],
            }
        },
        "pipelines": {"app": {"repo": "cfg", "waves": [{"name": "s", "targets": ["t"]}]}},
    }
)
CTX: Any = SimpleNamespace(runtime=SimpleNamespace(config=CONFIG))
SAME = {"repo", "sha", "context", "state", "kind", "app", "user", "event_id"}


def webhook(event: str, doc: dict[str, Any]) -> dict[str, Any]:
    doc = {**doc, "repository": {"full_name": "acme/cfg"}}
    message = webhooks._github_message(CTX, event, json.dumps(doc).encode())
    dumped: dict[str, Any] = message.model_dump()  # type: ignore[union-attr]
    return {k: v for k, v in dumped.items() if k in SAME}


def polled(repo: str, check: Any) -> dict[str, Any]:
    dumped = check_report(repo, SHA, check).model_dump()
    return {k: v for k, v in dumped.items() if k in SAME}


def test_a_polled_status_is_the_status_webhook() -> None:
    for creator in ({"login": "ci-app[bot]", "type": "Bot"}, {"login": "alice", "type": "User"}):
        status = {"state": "failure", "context": "ci/validate", "creator": creator}
        (check,) = parse_statuses([status])
        delivery = {"sha": SHA, "state": "failure", "context": "ci/validate", "sender": creator}
        assert polled("cfg", check) == webhook("status", delivery)


def test_a_polled_check_run_is_the_check_run_webhook() -> None:
    run = {
        "name": "build",
        "head_sha": SHA,
        "status": "completed",
        "conclusion": "success",
        "app": {"slug": "ci-app", "name": "CI"},
    }
    (check,) = parse_check_runs({"check_runs": [run]})
    assert polled("cfg", check) == webhook("check_run", {"check_run": run})


def test_a_polled_application_is_the_argocd_notification() -> None:
    body = ArgoReport(app="t", revision=SHA, phase="Succeeded", health="Healthy", sync="Synced")
    fields = body.model_dump()
    meaning = "/".join(fields[k] for k in ("app", "revision", "phase", "health", "sync"))
    # ingest's id for this body (services/ingest/webhooks.py, argocd)
    expected = uuid.uuid5(webhooks._NS, f"deploy/{meaning}")
    report = deploy_report("t", SHA, "Succeeded", "Healthy", "Synced")
    assert REPORT_NS == webhooks._NS
    assert report.event_id == expected
    assert report.model_dump(exclude={"reported_at", "event_id"}) == fields
