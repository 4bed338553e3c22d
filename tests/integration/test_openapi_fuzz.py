"""Schemathesis against the live ``/openapi.json`` of a real ingest (``IngestServer`` on real
Kafka and PostgreSQL, on a loopback port): the examples, coverage and fuzzing phases (the
stateful one finds no links to follow) and every check, a fixed number of examples per
operation, deterministic (the same cases every run). No answer may be a 5xx, and every
answer must match the document: status code, content type, headers and body schema;
invalid input must be refused and valid input accepted.

The fuzzer gets the test tokens per operation, GitHub deliveries are signed by
``tests/fuzzhooks.py``, the pipeline and wave in paths are the test config's, and
dictionaries steer promotion ids, GitHub events and repository names towards ones that
exist, so the requests reach the handlers (the metrics afterwards show they did).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from tests.conftest import ARGOCD_TOKEN, CI_TOKEN, GITHUB_SECRET, OPERATOR_TOKEN
from waveline.services.ingest.server import IngestServer
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.flux_config import FluxSettings
from waveline.shared.runtime import Runtime, bootstrap

ROOT = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 25
FLUX_TOKEN = "flux-token-for-the-fuzzer-97531"
# The run takes ~30-45 s on 2 cores alone; beside the suite's other worker and more
# operations (freezes, retries) it took up to 90. This only keeps a hang from lasting.
DEADLINE_S = 150
pytestmark = pytest.mark.timeout(DEADLINE_S + 30)


# Operations whose valid bodies JSON Schema cannot describe exactly, so a body the document
# allows may still be refused (422): an image's Digest must name its Tag's repository (two
# fields compared), and what a GitHub delivery must hold depends on its X-GitHub-Event
# header. For these the check that every schema-valid request is accepted is off; every
# other check, the refusal of invalid input included, still runs.
NOT_EXACT = "checks = { positive_data_acceptance = { enabled = false } }"


# Webhook promotions into app/staging, one waiting for its result and one over, so result
# reports reach both answers past the lookup (202 and 409).
OPEN_PROMOTION = uuid.UUID("0f6f6a4e-1b1c-4c55-9a51-0a5d3c1f2b01")
ENDED_PROMOTION = uuid.UUID("0f6f6a4e-1b1c-4c55-9a51-0a5d3c1f2b02")


async def seed_promotions(runtime: Runtime) -> None:
    for promotion_id, status, app_sha in [
        (OPEN_PROMOTION, "requested", "1" * 40),
        (ENDED_PROMOTION, "done", "2" * 40),
    ]:
        await runtime.pool.execute(
            "INSERT INTO promotions (promotion_id, pipeline, wave, from_wave, app_sha, kind,"
            " status, strategy) VALUES ($1, 'app', 'staging', NULL, $2, 'introduce', $3,"
            " 'webhook')",
            promotion_id,
            app_sha,
            status,
        )


def fuzz_config(url: str) -> str:
    """schemathesis.toml for a run against ``url`` (one [[operations]] entry per operation
    at most: the first that matches applies)."""

    def bearer(token: str) -> str:
        return f'headers = {{ Authorization = "Bearer {token}" }}'

    per_operation = [
        (r"^/v1/(pipelines/\{pipeline\}/)?images$", [bearer(CI_TOKEN), NOT_EXACT]),
        (r"^/v1/webhooks/github$", [NOT_EXACT]),
        (r"^/v1/webhooks/argocd$", [bearer(ARGOCD_TOKEN)]),
        (r"^/v1/webhooks/flux$", [bearer(FLUX_TOKEN)]),
        (r"^/v1/pipelines/\{pipeline\}(/waves/.*)?$", [bearer(OPERATOR_TOKEN)]),
        (r"^/v1/(freeze|unfreeze|freezes)$", [bearer(OPERATOR_TOKEN)]),
        (r"^/v1/pipelines/\{pipeline\}/(freeze|unfreeze|sets/.*)$", [bearer(OPERATOR_TOKEN)]),
        (r"^/$", [bearer(OPERATOR_TOKEN)]),
    ]
    lines = [
        f"base-url = {json.dumps(url)}",
        'hooks = "tests.fuzzhooks"',
        "request-timeout = 10",
        "[generation]",
        f"max-examples = {MAX_EXAMPLES}",
        "deterministic = true",
        "with-security-parameters = false",
        'database = "none"',  # no examples carried over from an earlier run
        "[cache]",
        "enabled = false",
        "[checks]",
        "enabled = true",  # every check (the command line's --checks would override operations)
        "[dictionaries.pipelines]",
        'values = ["app"]',
        "[dictionaries.promotions]",
        f'values = ["{OPEN_PROMOTION}", "{ENDED_PROMOTION}"]',
        "[dictionaries.repos]",
        'values = ["remote/cfg-app"]',
        "[dictionaries.events]",
        'values = ["status", "check_run", "check_suite", "pull_request", "ping"]',
        "[parameters]",
        # Fixed: with an unknown pipeline or wave, every phase would stop at the 404.
        '"path.pipeline" = "app"',
        '"path.wave" = "staging"',
        '"header.X-GitHub-Event" = { dictionary = "events", probability = 0.8 }',
        '"path.promotion" = { dictionary = "promotions", probability = 0.8 }',
        '"body.pipeline" = { dictionary = "pipelines", probability = 0.8 }',
        '"body.repository.full_name" = { dictionary = "repos", probability = 0.8 }',
    ]
    for regex, settings in per_operation:
        lines += ["[[operations]]", f"include-path-regex = {json.dumps(regex)}", *settings]
    return "\n".join(lines) + "\n"


async def test_fuzzer_finds_no_5xx_and_every_answer_matches_the_document(
    settings: Settings, config: WavelineConfig, secrets: Secrets, tmp_path: Path
) -> None:
    flux = FluxSettings(flux_token=SecretStr(FLUX_TOKEN))
    runtime = bootstrap("ingest", settings.model_copy(update={"flux": flux}), config, secrets)
    await runtime.start()
    await seed_promotions(runtime)
    server = IngestServer(runtime)
    await server.start()
    try:
        config_file = tmp_path / "schemathesis.toml"
        config_file.write_text(fuzz_config(server.url))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVELINE_", "SCHEMA"))}
        env |= {"WAVELINE_FUZZ_GITHUB_SECRET": GITHUB_SECRET, "PYTHONPATH": str(ROOT)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config_file),
            "run",
            f"{server.url}/openapi.json",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path / "report"),
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(DEADLINE_S):
                output, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        text = output.decode(errors="replace")
        assert process.returncode == 0, text[-20_000:]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.url}/metrics") as resp,
        ):
            metrics = await resp.text()
    finally:
        await server.stop()
        await runtime.stop()
    # The fuzzer got past authentication into every handler that accepts something.
    for route in (
        "/v1/images",
        "/v1/webhooks/github",
        "/v1/webhooks/argocd",
        "/v1/webhooks/flux",
        "/v1/pipelines/{pipeline}/waves/{wave}/{action}",
        "/v1/pipelines/{pipeline}/waves/{wave}/rollback",
        "/v1/pipelines/{pipeline}/waves/{wave}/promotions/{promotion}/result",
        "/v1/pipelines/{pipeline}",
        "/v1/freeze",
        "/v1/pipelines/{pipeline}/freeze",
        "/v1/freezes",
        "/",
    ):
        accepted = [
            line
            for line in metrics.splitlines()
            if line.startswith(f'waveline_ingest_requests_total{{route="{route}",status="2')
        ]
        assert accepted, f"no 2xx on {route}: the fuzzer never reached its handler"
