"""status-tracker's Kafka side: the latest check state per (commit, context) and the latest
deploy state per Argo CD target are recorded in Postgres; out-of-order deliveries never
overwrite a newer report."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from faststream.kafka import KafkaMessage
from faststream.middlewares import AckPolicy

from waveline.shared.models.checks import CheckReported
from waveline.shared.models.deploys import DeployReported
from waveline.shared.runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass
class StatusTracker:
    runtime: Runtime

    def register(self) -> None:
        rt = self.runtime
        boundary = rt.boundary()
        group = rt.group("waveline-status-tracker")

        @rt.broker.subscriber(
            rt.topics.checks,
            group_id=group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title="status-tracker checks",
        )
        async def on_check(msg: KafkaMessage) -> None:
            await boundary.run(msg, CheckReported.model_validate_json, self.on_check)

        @rt.broker.subscriber(
            rt.topics.deploys,
            group_id=group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title="status-tracker deploys",
        )
        async def on_deploy(msg: KafkaMessage) -> None:
            await boundary.run(msg, DeployReported.model_validate_json, self.on_deploy)

    async def on_check(self, check: CheckReported) -> None:
        await self.runtime.pool.execute(
            "INSERT INTO commit_checks (repo, sha, context, state, reported_at)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (repo, sha, context) DO UPDATE"
            " SET state = EXCLUDED.state, reported_at = EXCLUDED.reported_at"
            " WHERE commit_checks.reported_at <= EXCLUDED.reported_at",
            check.repo,
            check.sha,
            check.context,
            check.state,
            check.reported_at,
        )
        logger.info("check %s on %s: %s", check.context, check.sha[:10], check.state)

    async def on_deploy(self, deploy: DeployReported) -> None:
        await self.runtime.pool.execute(
            "INSERT INTO target_deploys (target, revision, phase, health, sync, reported_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (target) DO UPDATE SET revision = EXCLUDED.revision,"
            " phase = EXCLUDED.phase, health = EXCLUDED.health, sync = EXCLUDED.sync,"
            " reported_at = EXCLUDED.reported_at"
            " WHERE target_deploys.reported_at <= EXCLUDED.reported_at",
            deploy.app,
            deploy.revision,
            deploy.phase,
            deploy.health,
            deploy.sync,
            deploy.reported_at,
        )
        logger.info(
            "target %s at %s: %s/%s", deploy.app, deploy.revision[:10], deploy.sync, deploy.health
        )
