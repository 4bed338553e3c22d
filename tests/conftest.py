"""Session fixtures: real Kafka and PostgreSQL; per-test topics, groups and schema."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.infra import Infra, provide
from tests.logscan import capture
from tests.support import isolated_settings, make_config
from waveline.devstack.demo import seed_repo
from waveline.services.ingest.app import create_app
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.runtime import bootstrap

CI_TOKEN = "ci-token-for-tests-0123456789"
OPERATOR_TOKEN = "operator-token-for-tests-987654"
GITHUB_SECRET = "github-webhook-secret-for-tests"
ARGOCD_TOKEN = "argocd-token-for-tests-24680"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``last`` (the log scan) run after everything else."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


@pytest.fixture(scope="session", autouse=True)
def suite_logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    handler = capture(tmp_path_factory.getbasetemp())
    yield
    logging.getLogger().removeHandler(handler)
    handler.close()


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with provide() as infra:
        yield infra


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare config repo with an images-json layout on master: the 'GitHub' of the test."""
    bare = tmp_path / "remote" / "cfg-app.git"
    seed_repo(bare)
    return bare


@pytest.fixture
def config(remote: Path) -> WavelineConfig:
    return make_config(remote.as_uri())


@pytest.fixture
def secrets() -> Secrets:
    from pydantic import SecretStr

    return Secrets(
        ci_token=SecretStr(CI_TOKEN),
        operator_token=SecretStr(OPERATOR_TOKEN),
        github_webhook_secret=SecretStr(GITHUB_SECRET),
        argocd_token=SecretStr(ARGOCD_TOKEN),
    )


@pytest.fixture
async def settings(infra: Infra, tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings with this test's own topics, consumer groups and database schema."""
    async with isolated_settings(infra.bootstrap, infra.database_url, tmp_path / "data") as s:
        yield s


@pytest.fixture
async def client(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> AsyncIterator[TestClient[Any, Any]]:
    """An ingest app on real Kafka and Postgres, behind aiohttp's test server."""
    runtime = bootstrap("ingest", settings, config, secrets)
    await runtime.start()
    async with TestClient(TestServer(create_app(runtime))) as client:
        yield client
    await runtime.stop()
