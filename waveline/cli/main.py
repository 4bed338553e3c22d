"""Entry point of the ``waveline`` console script (README.md, Operating it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from waveline.cli import freeze as freeze_cmd
from waveline.cli import quarantine as quarantine_cmd
from waveline.cli import retry as retry_cmd
from waveline.cli.ops import CliError
from waveline.shared.config import Secrets, load_config, load_settings
from waveline.shared.errors import ConfigError
from waveline.shared.logs import secret_values, setup_logging

logger = logging.getLogger(__name__)


def _timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _add_publish(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    publish = sub.add_parser("publish", help="announce an image set (for CI)")
    publish.add_argument("--pipeline")
    publish.add_argument("--app-sha")
    publish.add_argument("--image", action="append", default=[], help="svc=repo:tag@sha256:…")
    publish.add_argument("--file", type=Path, help="a JSON {svc: {Tag, Digest}} object")
    publish.add_argument("--kafka", action="store_true", help="produce to waveline.images")
    publish.add_argument(
        "--app-committed-at", help="the app commit's time, e.g. $(git show -s --format=%%cI)"
    )
    publish.add_argument(
        "--force", action="store_true", help="announce a quarantined set, lifting its quarantine"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="waveline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a service (or all) in the foreground")
    run.add_argument(
        "service",
        choices=[
            "ingest",
            "git-writer",
            "status-tracker",
            "promoter",
            "notifier",
            "reconciler",
            "all",
        ],
    )

    dev = sub.add_parser("dev", help="the local stack: Kafka, PostgreSQL and the five services")
    dev.add_argument("action", choices=["up", "down", "status"])

    replay = sub.add_parser("replay", help="re-drive a topic's messages (effects are idempotent)")
    replay.add_argument("--topic", required=True, help="e.g. waveline.images")
    start = replay.add_mutually_exclusive_group(required=True)
    start.add_argument("--since", type=_timestamp, help="ISO 8601 time, e.g. 2026-11-21T09:00Z")
    start.add_argument("--from-offset", type=int)
    replay.add_argument("--dry-run", action="store_true", help="count, publish nothing")

    prune = sub.add_parser("prune", help="delete rows past their retention (docs/reliability.md)")
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    trace = sub.add_parser("trace", help="one image set's journey, hop by hop, with times")
    trace.add_argument("app_sha", metavar="app-sha")
    trace.add_argument("--since", type=_timestamp, help="ISO 8601 time (default: 24h ago)")
    trace.add_argument("--pipeline", help="only this pipeline's messages")
    trace.add_argument("--json", action="store_true", help="machine-readable output")

    _add_publish(sub)

    status = sub.add_parser("status", help="waves, gates and pending commits of a pipeline")
    status.add_argument("pipeline")
    status.add_argument("--json", action="store_true")
    for action in ("approve", "hold", "release", "rollback"):
        op = sub.add_parser(action, help=f"{action} a wave")
        op.add_argument("pipeline")
        op.add_argument("wave")
        if action == "rollback":
            op.add_argument("--to", default="previous", help="app sha, or 'previous'")
            op.add_argument("--hold", action="store_true", help="and hold the wave")
        if action == "approve":
            op.add_argument("--break-glass", metavar="REASON", help="through a freeze")

    retry_cmd.add_parser(sub)
    quarantine_cmd.add_parser(sub)
    freeze_cmd.add_parsers(sub)
    dora = sub.add_parser("dora", help="DORA metrics per pipeline and wave (docs/dora.md)")
    dora.add_argument("pipeline", nargs="?", help="one pipeline (default: all)")
    dora.add_argument("--since", default="30d", help="a duration (30d, 12h) or an ISO date")
    dora.add_argument("--json", action="store_true", help="machine-readable output")
    dora.add_argument("--from-git", action="store_true", help="rebuild from git and the topics")
    dora.add_argument("--git-dir", type=Path, help="--from-git: the config repo's clone")

    sub.add_parser("migrate", help="apply the SQL migrations")
    topics = sub.add_parser(
        "topics",
        help="create the Kafka topics (idempotent); exit 3 when existing ones differ",
    )
    topics.add_argument(
        "--warn-only", action="store_true", help="report differing topics but exit 0"
    )
    sub.add_parser("check-config", help="validate WAVELINE_CONFIG and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in {"publish", "status", "approve", "hold", "release", "rollback"}:
            return _ops(args)
        if args.command == "retry":
            return retry_cmd.run(args)
        if args.command == "unquarantine":
            return quarantine_cmd.run(args)
        if args.command in freeze_cmd.COMMANDS:
            return freeze_cmd.run(args)
        if args.command == "dev":
            from waveline.devstack import stack

            return stack.main(args.action)
        settings = load_settings()
        if args.command == "migrate":
            setup_logging("migrate", settings.log_level, secret_values(settings, Secrets()))
            from waveline.shared.db import migrate

            applied = asyncio.run(migrate(settings))
            print(f"applied {len(applied)} migration(s) to schema {settings.database_schema}")
            return 0
        if args.command == "prune":
            setup_logging("prune", settings.log_level, secret_values(settings, Secrets()))
            from waveline.cli import prune as prune_cmd

            return prune_cmd.run(settings, dry_run=args.dry_run)
        if args.command == "replay":
            setup_logging("replay", settings.log_level, secret_values(settings, Secrets()))
            from waveline.cli.replay import replay as run_replay

            try:
                report = asyncio.run(
                    run_replay(
                        settings,
                        args.topic,
                        since=args.since,
                        from_offset=args.from_offset,
                        dry_run=args.dry_run,
                    )
                )
            except ValueError as exc:
                print(f"waveline replay: {exc}", file=sys.stderr)
                return 2
            verb = "would re-publish" if report.dry_run else "re-published"
            print(f"{verb} {report.messages} message(s) of {report.topic}")
            for partition, (first, end) in sorted(report.per_partition.items()):
                print(f"  partition {partition}: offsets {first}..{end}")
            return 0
        if args.command == "trace":
            setup_logging("trace", settings.log_level, secret_values(settings, Secrets()))
            from waveline.cli import trace

            return trace.run(
                settings, args.app_sha, since=args.since, pipeline=args.pipeline, as_json=args.json
            )
        if args.command == "dora":
            setup_logging("dora", settings.log_level, secret_values(settings, Secrets()))
            from waveline.cli import dora as dora_cmd

            return dora_cmd.run(
                settings,
                args.pipeline,
                since=args.since,
                as_json=args.json,
                from_git=args.from_git,
                git_dir=args.git_dir,
            )
        if args.command == "topics":
            setup_logging("topics", settings.log_level, secret_values(settings, Secrets()))
            from waveline.cli import topics

            return topics.run(settings, warn_only=args.warn_only)
        config = load_config(settings.config)
        if args.command == "check-config":
            print(
                f"{settings.config}: {len(config.repos)} repo(s), "
                f"{len(config.pipelines)} pipeline(s)"
            )
            return 0
        secrets = Secrets.from_env(config.auth, names=config.secret_env_names())
        names = (
            ["ingest", "git-writer", "status-tracker", "promoter", "notifier", "reconciler"]
            if args.service == "all"
            else [args.service]
        )
        setup_logging("+".join(names), settings.log_level, secret_values(settings, secrets, config))
        from waveline.cli.serve import run_services

        asyncio.run(run_services(names, settings, config, secrets))
        return 0
    except CliError as exc:
        print(f"waveline: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"waveline: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _ops(args: argparse.Namespace) -> int:
    from waveline.cli import ops, plugin

    if args.command == "publish":
        if plugin.is_plugin_run(os.environ) and not (args.pipeline or args.file or args.image):
            print(plugin.run(os.environ))
            return 0
        if not args.pipeline or not args.app_sha:
            raise CliError("publish needs --pipeline and --app-sha (or PLUGIN_* variables)")
        doc = ops.image_set_document(
            args.pipeline, args.app_sha, args.image, args.file, args.app_committed_at
        )
        if args.force:
            if args.kafka:
                raise CliError("--force is for ingest (it lifts the quarantine); not --kafka")
            doc["force"] = True
        if args.kafka:
            settings = load_settings()
            asyncio.run(plugin.produce(settings, doc))
            print(f"produced image set {args.app_sha[:12]} to waveline.images")
        else:
            _, answer = ops.request("POST", "/v1/images", "WAVELINE_CI_TOKEN", doc)
            print(f"accepted: event {answer['event_id']}")
        return 0
    if args.command == "status":
        _, doc = ops.request("GET", f"/v1/pipelines/{args.pipeline}", "WAVELINE_OPERATOR_TOKEN")
        print(json.dumps(doc, indent=2) if args.json else ops.format_status(doc))
        return 0
    body: dict[str, object] = {"to": args.to} if args.command == "rollback" else {}
    if getattr(args, "hold", False):
        body["hold"] = True
    if getattr(args, "break_glass", None):
        body["break_glass"] = {"reason": args.break_glass}
    path = f"/v1/pipelines/{args.pipeline}/waves/{args.wave}/{args.command}"
    _, answer = ops.request("POST", path, "WAVELINE_OPERATOR_TOKEN", body)
    print(f"{args.command} accepted: event {answer['event_id']}")
    return 0
