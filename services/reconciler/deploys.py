"""Reconcile deploys: the targets of a wave that has not reported the set it holds at
watched's tip ``reconcile_deploys_after_s`` after Waveline saw watched move there are read
from their deployer's API (a ``DeploySource``: Argo CD's, or Flux's for targets named
``Kustomization/…`` or ``HelmRelease/…``), and what it says is published on
``waveline.deploys`` as the notification would have been (``deploy_report``): the
status-tracker's rules for which reports count apply unchanged.

Each target is polled on its own backoff; a report equal to the last one published for the
target is not published again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from waveline.services.reconciler import rules, store
from waveline.services.reconciler.metrics import ReconcilerMetrics
from waveline.services.status_tracker.decide import ChangeLog
from waveline.shared.deploy_sources import DeploySource
from waveline.shared.errors import WavelineError
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)

# Picks the source of a target (None: no deployer API is configured for it).
Router = Callable[[str], DeploySource | None]


@dataclass
class DeploysPoller:
    runtime: Runtime
    metrics: ReconcilerMetrics
    route: Router
    clock: Callable[[], float] = time.time
    _polls: dict[str, rules.PollState] = field(default_factory=dict)
    _published: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)
    _log: ChangeLog = field(default_factory=ChangeLog)

    async def waiting(self) -> list[str]:
        """Every target some wave waits for, past the delay (whether due or not)."""
        config = self.runtime.config
        settings = self.runtime.settings.reconcile
        pool = self.runtime.pool
        repos = sorted({p.repo for p in config.pipelines.values()})
        tips = await store.watched_tips(pool, repos)
        running = await store.running_sets(pool)
        found: list[str] = []
        for name, pipeline in config.pipelines.items():
            tip = tips.get(pipeline.repo)
            if tip is None:
                continue
            for wave in pipeline.waves:
                expected = tip.waves.get(f"{name}/{wave.name}")
                if expected is None or running.get((name, wave.name)) == expected:
                    continue
                views = await store.target_views(pool, pipeline.repo, name, wave.name, wave.targets)
                found += rules.waiting_targets(
                    wave.targets,
                    expected,
                    running.get((name, wave.name)),
                    tip_age_s=tip.age_s,
                    after_s=settings.reconcile_deploys_after_s,
                    reports=views,
                )
        return sorted(set(found))

    async def round(self) -> int:
        """Read every waiting target that is due; return how many reports were published."""
        settings = self.runtime.settings.reconcile
        waiting = await self.waiting()
        for gone in [t for t in self._polls if t not in waiting]:
            del self._polls[gone]
        published = 0
        for target in waiting:
            if not rules.due(self._polls.get(target), self.clock()):
                continue
            source = self.route(target)
            if source is None:
                if self._log.changed(target, "no source"):
                    logger.warning(
                        "reconciler: target %s waits for a deploy report, but no deployer API"
                        " is configured to read it from",
                        target,
                    )
                continue
            self._polls[target] = rules.after_poll(
                self._polls.get(target),
                self.clock(),
                settings.reconcile_deploys_after_s,
                settings.reconcile_backoff_cap_s,
            )
            try:
                report = await source.read(target)
            except WavelineError as exc:
                self.metrics.calls.labels("deployer", "error").inc()
                if self._log.changed(target, type(exc).__name__):
                    logger.warning("reconciler: target %s not read: %s", target, exc)
                continue
            self.metrics.calls.labels("deployer", "ok").inc()
            self._log.changed(target, None)
            if report is None:
                continue
            fact = (report.revision, report.phase, report.health, report.sync)
            if self._published.get(target) == fact:
                continue
            await self.runtime.publish(report, self.runtime.topics.deploys, key=report.app)
            self._published[target] = fact
            self.metrics.learned.labels("deploy").inc()
            published += 1
            logger.info(
                "reconciler: target %s is %s/%s at %s (read from its deployer)",
                target,
                report.sync or "-",
                report.health or "-",
                report.revision[:10],
            )
        return published
