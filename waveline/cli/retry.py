"""``waveline retry PIPELINE APP_SHA``: a new attempt for an image set whose commit was
evicted from ``auto``, without CI announcing it again (docs/gates.md, Retry after eviction).

Uses ingest's ``POST /v1/pipelines/{p}/sets/{app_sha}/retry`` with
``WAVELINE_OPERATOR_TOKEN`` (its name is recorded as who asked). Refused (exit 1) for a set
never announced (404) or whose newest attempt was not evicted (409, saying where it is).
"""

from __future__ import annotations

import argparse
import urllib.parse

from waveline.cli import ops


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("retry", help="a new attempt for an image set evicted from auto")
    parser.add_argument("pipeline")
    parser.add_argument("app_sha", metavar="app-sha")


def run(args: argparse.Namespace) -> int:
    path = "/v1/pipelines/{}/sets/{}/retry".format(
        urllib.parse.quote(args.pipeline, safe=""), urllib.parse.quote(args.app_sha, safe="")
    )
    _, answer = ops.request("POST", path, "WAVELINE_OPERATOR_TOKEN", {})
    print(
        f"attempt {answer['attempt']} of {args.app_sha[:12]} requested: event {answer['event_id']}"
    )
    return 0
