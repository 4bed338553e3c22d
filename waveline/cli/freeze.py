"""``waveline freeze --all|PIPELINE [--wave W] --reason TEXT`` stops promotions at once;
``waveline unfreeze --all|PIPELINE [--wave W]`` lifts the freezes made at that same scope
(docs/gates.md, Freeze windows).

Uses ingest's ``POST /v1[/pipelines/{p}[/waves/{w}]]/freeze|unfreeze`` with
``WAVELINE_OPERATOR_TOKEN`` (its name is recorded with the reason). A break-glass promotion
through a freeze is ``waveline approve PIPELINE WAVE --break-glass REASON``.
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from waveline.cli import ops

COMMANDS = frozenset({"freeze", "unfreeze"})


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for command, help_text in (
        ("freeze", "stop promotions into every wave, a pipeline's or one wave"),
        ("unfreeze", "lift the freezes made at that same scope"),
    ):
        parser = sub.add_parser(command, help=help_text)
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("pipeline", nargs="?")
        scope.add_argument("--all", action="store_true", help="every pipeline")
        parser.add_argument("--wave", help="only this wave of the pipeline")
        if command == "freeze":
            parser.add_argument("--reason", required=True, help="why (recorded)")


def path_of(command: str, pipeline: str | None, wave: str | None) -> str:
    prefix = "/v1"
    if pipeline is not None:
        prefix += "/pipelines/" + urllib.parse.quote(pipeline, safe="")
        if wave is not None:
            prefix += "/waves/" + urllib.parse.quote(wave, safe="")
    return f"{prefix}/{command}"


def _describe(freeze: dict[str, Any]) -> str:
    where = {
        "all": "every pipeline",
        "pipeline": f"pipeline {freeze['pipeline']}",
        "wave": f"wave {freeze['wave']} of {freeze['pipeline']}",
    }[freeze["scope"]]
    return f"{where} by {freeze['actor']} since {freeze['created_at'][:19]}Z: {freeze['reason']}"


def run(args: argparse.Namespace) -> int:
    if args.all and args.wave:
        raise ops.CliError("--wave needs a pipeline, not --all")
    pipeline = None if args.all else args.pipeline
    path = path_of(args.command, pipeline, args.wave)
    body = {"reason": args.reason} if args.command == "freeze" else {}
    _, answer = ops.request("POST", path, "WAVELINE_OPERATOR_TOKEN", body)
    if args.command == "freeze":
        print(f"frozen: {_describe(answer['freeze'])}")
        return 0
    for freeze in answer["lifted"]:
        print(f"lifted: {_describe(freeze)}")
    if not answer["lifted"]:
        print("nothing was frozen at that scope")
    for freeze in answer["in_force"]:
        print(f"still frozen: {_describe(freeze)}")
    return 0
