"""``waveline unquarantine PIPELINE APP_SHA``: lift the quarantine a rollback put on an
image set (docs/gates.md, Rollback quarantines), so it may be announced and promoted again.

Uses ingest's ``POST /v1/pipelines/{p}/sets/{app_sha}/unquarantine`` with
``WAVELINE_OPERATOR_TOKEN`` (its name is recorded as who lifted it). Exit 1 when the set is
not quarantined (404).
"""

from __future__ import annotations

import argparse
import urllib.parse

from waveline.cli import ops


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("unquarantine", help="lift the quarantine a rollback put on a set")
    parser.add_argument("pipeline")
    parser.add_argument("app_sha", metavar="app-sha")


def run(args: argparse.Namespace) -> int:
    path = "/v1/pipelines/{}/sets/{}/unquarantine".format(
        urllib.parse.quote(args.pipeline, safe=""), urllib.parse.quote(args.app_sha, safe="")
    )
    _, answer = ops.request("POST", path, "WAVELINE_OPERATOR_TOKEN", {})
    was = answer["was"]
    print(
        f"quarantine of {args.app_sha[:12]} lifted by {answer['lifted_by']}"
        f" (rolled back out of {was['wave']} by {was['actor']} at {was['since']})"
    )
    return 0
