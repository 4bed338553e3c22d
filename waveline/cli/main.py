"""Entry point of the ``waveline`` console script (DESIGN §3, CLI)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from waveline.shared.config import Secrets, load_config, load_settings
from waveline.shared.errors import ConfigError
from waveline.shared.logs import setup_logging

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="waveline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a service (or all) in the foreground")
    run.add_argument(
        "service",
        choices=["ingest", "git-writer", "status-tracker", "promoter", "notifier", "all"],
    )

    dev = sub.add_parser("dev", help="the local stack: Kafka, PostgreSQL and the five services")
    dev.add_argument("action", choices=["up", "down", "status"])

    sub.add_parser("migrate", help="apply the SQL migrations")
    sub.add_parser("topics", help="create the Kafka topics (idempotent)")
    sub.add_parser("check-config", help="validate WAVELINE_CONFIG and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "dev":
            from waveline.devstack import stack

            return stack.main(args.action)
        settings = load_settings()
        if args.command == "migrate":
            setup_logging("migrate", settings.log_level)
            from waveline.shared.db import migrate

            applied = asyncio.run(migrate(settings))
            print(f"applied {len(applied)} migration(s) to schema {settings.database_schema}")
            return 0
        if args.command == "topics":
            setup_logging("topics", settings.log_level)
            from waveline.shared.kafka import ensure_topics
            from waveline.shared.topics import Topics

            topics = Topics(settings.topic_prefix).all()
            asyncio.run(ensure_topics(settings.kafka_bootstrap, topics))
            print(f"{len(topics)} topics present on {settings.kafka_bootstrap}")
            return 0
        config = load_config(settings.config)
        if args.command == "check-config":
            print(
                f"{settings.config}: {len(config.repos)} repo(s), "
                f"{len(config.pipelines)} pipeline(s)"
            )
            return 0
        secrets = Secrets.from_env(config.auth)
        names = (
            ["ingest", "git-writer", "status-tracker", "promoter", "notifier"]
            if args.service == "all"
            else [args.service]
        )
        secret_values = [
            s.get_secret_value()
            for s in (
                secrets.ci_token,
                secrets.github_webhook_secret,
                secrets.argocd_token,
                secrets.operator_token,
                settings.database_url,
            )
            if s is not None
        ]
        setup_logging("+".join(names), settings.log_level, secret_values)
        from waveline.cli.serve import run_services

        asyncio.run(run_services(names, settings, config, secrets))
        return 0
    except ConfigError as exc:
        print(f"waveline: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
