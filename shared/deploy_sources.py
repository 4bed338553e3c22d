"""Where a target's deploy state can be read when its notification was lost: the
``DeploySource`` protocol the reconciler polls (docs/reconcile.md), implemented by Argo CD's
API (shared/argocd_api.py) and Flux's through the Kubernetes API.

``deploy_report`` builds the ``DeployReported`` a source returns with the id ingest gives
the same fact (services/ingest/webhooks.py): the same report, polled or notified, is one
event downstream.
"""

from __future__ import annotations

import uuid
from typing import Protocol

from waveline.shared.models.base import utcnow
from waveline.shared.models.deploys import DeployReported

# The namespace of ingest's report ids (services/ingest/webhooks.py); a unit test holds
# the two together.
REPORT_NS = uuid.UUID("8f6d2c1e-52a4-4d7b-9b3e-1d0c8e7a6f55")


class DeploySource(Protocol):
    """A deployer's API, read one target at a time."""

    async def read(self, target: str) -> DeployReported | None:
        """What ``target`` runs now, as its notification would have said it; None when the
        deployer reports no single revision for it (a multi-source Application, nothing
        synced yet). Raises a ``WavelineError`` (``retriable`` set) when it cannot say."""
        ...

    async def close(self) -> None:
        """Release connections. Safe to call more than once."""
        ...


def deploy_report(app: str, revision: str, phase: str, health: str, sync: str) -> DeployReported:
    """The report ingest publishes for this notification body (``ArgoReport``)."""
    meaning = "/".join((app, revision, phase, health, sync))
    return DeployReported(
        event_id=uuid.uuid5(REPORT_NS, f"deploy/{meaning}"),
        app=app,
        revision=revision,
        phase=phase,
        health=health,
        sync=sync,
        reported_at=utcnow(),
    )
