"""Schemathesis on ``POST /v1/webhooks/gitlab`` past its authentication: the same run and
checks as ``test_openapi_fuzz.py`` (whose requests carry no GitLab token, so every one of
them stops at 401/403), restricted to this operation and sending the webhook's secret token,
so the fuzzed bodies reach the handler and every answer must still match the document."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from tests.integration.test_openapi_fuzz import DEADLINE_S, NOT_EXACT, ROOT, fuzz_config
from waveline.services.ingest.server import IngestServer
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.runtime import bootstrap

FUZZ_GITLAB_SECRET = "gitlab-fuzz-webhook-token-5e7c"
ROUTE = "/v1/webhooks/gitlab"


async def test_fuzzed_gitlab_deliveries_match_the_document(
    settings: Settings, config: WavelineConfig, secrets: Secrets, tmp_path: Path
) -> None:
    secrets = secrets.model_copy(update={"gitlab_webhook_secret": SecretStr(FUZZ_GITLAB_SECRET)})
    runtime = bootstrap("ingest", settings, config, secrets)
    await runtime.start()
    server = IngestServer(runtime)
    await server.start()
    try:
        # What X-Gitlab-Event's value must go with the body cannot be said in JSON Schema:
        # schema-valid requests may be refused (NOT_EXACT), everything else is checked.
        operation = [
            "[[operations]]",
            f'include-path = "{ROUTE}"',
            f'headers = {{ "X-Gitlab-Token" = "{FUZZ_GITLAB_SECRET}" }}',
            "generation = { max-examples = 12 }",  # one operation: keep the run short
            NOT_EXACT,
        ]
        config_file = tmp_path / "schemathesis.toml"
        config_file.write_text(fuzz_config(server.url) + "\n".join(operation) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WAVELINE_", "SCHEMA"))}
        env |= {"WAVELINE_FUZZ_GITHUB_SECRET": "unused", "PYTHONPATH": str(ROOT)}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config_file),
            "run",
            f"{server.url}/openapi.json",
            "--include-path",
            ROUTE,
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
    accepted = [
        line
        for line in metrics.splitlines()
        if line.startswith(f'waveline_ingest_requests_total{{route="{ROUTE}",status="2')
    ]
    assert accepted, f"no 2xx on {ROUTE}: the fuzzer never got past the token"
