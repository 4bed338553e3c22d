"""reconciler: makes up for lost webhooks by polling (docs/reconcile.md).

Consumes nothing. Two loops, every ``reconcile_interval_s``:

- checks (``checks.py``): commits of ``auto`` pending too long are read on GitHub and their
  required verdicts published on ``waveline.checks``, as ingest would have from the webhook;
- deploys (``deploys.py``): targets of a wave that has not reported what it holds on watched
  are read from Argo CD's API (or Flux's) and published on ``waveline.deploys``.

The status-tracker judges what they publish exactly as what ingest publishes. A round that
fails (PostgreSQL or Kafka away) is logged once and retried at the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from waveline.services.reconciler.checks import ChecksPoller, Gate
from waveline.services.reconciler.deploys import DeploysPoller
from waveline.services.reconciler.metrics import ReconcilerMetrics
from waveline.services.status_tracker.decide import ChangeLog
from waveline.shared.argocd_api import ArgoCdApi
from waveline.shared.deploy_sources import DeploySource
from waveline.shared.flux_api import FluxSource, is_flux_target
from waveline.shared.forge.github_app import token_source
from waveline.shared.forge.github_checks import GitHubChecks
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)


def checks_clients(runtime: Runtime) -> dict[str, tuple[GitHubChecks, Gate]]:
    """A client per repo whose forge is GitHub (with a token or as a GitHub App) and that
    has required checks; repos on the same API and credentials share one budget gate.
    ``ConfigError`` when a credential is missing."""
    share = runtime.settings.reconcile.reconcile_budget_share
    timeout = runtime.settings.reconcile.reconcile_timeout_s
    gates: dict[tuple[str, str], Gate] = {}
    clients: dict[str, tuple[GitHubChecks, Gate]] = {}
    for name, repo in sorted(runtime.config.repos.items()):
        forge = repo.forge
        if forge is None or forge.kind != "github" or not repo.required_checks:
            continue
        tokens = token_source(name, repo, runtime.secrets)
        who = f"app:{forge.app.app_id}" if forge.app is not None else forge.token_env
        gate = gates.setdefault((forge.api_url, who), Gate(share))
        clients[name] = (GitHubChecks(forge.api_url, token=tokens, timeout_s=timeout), gate)
    return clients


def deploy_router(
    runtime: Runtime,
) -> tuple[Callable[[str], DeploySource | None], list[DeploySource]]:
    """Which source reads a target (Flux's for ``Kustomization/…`` and ``HelmRelease/…``
    targets, Argo CD's for the others; None when that one is not configured), and every
    source (to close)."""
    settings = runtime.settings.reconcile
    argo: DeploySource | None = None
    if settings.argocd_api_url is not None and settings.argocd_api_token is not None:
        argo = ArgoCdApi(
            settings.argocd_api_url,
            token=settings.argocd_api_token,
            timeout_s=settings.reconcile_timeout_s,
        )
    flux: DeploySource | None = None
    if runtime.settings.flux.kube_configured():
        flux = FluxSource(runtime.settings.flux)

    def route(target: str) -> DeploySource | None:
        return flux if is_flux_target(target) else argo

    return route, [s for s in (argo, flux) if s is not None]


@dataclass
class Reconciler:
    runtime: Runtime
    metrics: ReconcilerMetrics = field(init=False)
    checks: ChecksPoller | None = None
    deploys: DeploysPoller | None = None
    _sources: list[DeploySource] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _log: ChangeLog = field(default_factory=ChangeLog)

    def __post_init__(self) -> None:
        self.metrics = ReconcilerMetrics(self.runtime)

    def register(self) -> None:
        """Nothing to consume: the reconciler reads tables and publishes."""

    async def on_started(self) -> None:
        clients = checks_clients(self.runtime)
        route, self._sources = deploy_router(self.runtime)
        if clients:
            self.checks = ChecksPoller(self.runtime, self.metrics, clients)
            self._tasks.append(self._loop("checks", self.checks.round))
        if self._sources:
            self.deploys = DeploysPoller(self.runtime, self.metrics, route)
            self._tasks.append(self._loop("deploys", self.deploys.round))
        logger.info(
            "reconciler: polling checks of %s; deploys from %s",
            sorted(clients) or "no repo (none names a GitHub forge with required checks)",
            " and ".join(type(s).__name__ for s in self._sources) or "nowhere (none is set)",
        )

    def _loop(self, kind: str, round_: Callable[[], Awaitable[int]]) -> asyncio.Task[None]:
        interval = self.runtime.settings.reconcile.reconcile_interval_s

        async def forever() -> None:
            while True:
                try:
                    await round_()
                    if self._log.changed(kind, None):
                        logger.info("reconciler: %s rounds succeed again", kind)
                except Exception as exc:
                    self.metrics.rounds_failed.labels(kind).inc()
                    if self._log.changed(kind, type(exc).__name__):
                        logger.warning(
                            "reconciler: a %s round failed; next in %.1f s",
                            kind,
                            interval,
                            exc_info=True,
                        )
                await asyncio.sleep(interval)

        return asyncio.create_task(forever(), name=f"reconciler-{kind}")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def after_consuming(self) -> None:
        if self.checks is not None:
            await self.checks.close()
        for source in self._sources:
            await source.close()
