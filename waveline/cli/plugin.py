"""``waveline publish`` as a Drone/Woodpecker plugin (seed 000), and straight-to-Kafka publish.

Plugin mode reads ``PLUGIN_*`` variables — ``GIT_REPO``, ``BRANCH``, ``IMAGE_TAG``,
``DESTINATION_FILE``, ``AUTHOR_NAME``, ``AUTHOR_EMAIL``, ``COMMIT_MESSAGE`` (with ``$VAR``
expansion from the environment) and ``ACCESS_TOKEN`` — and commits the tag into the file on
the branch with Waveline's git engine: no working tree, a lease on the branch, one retry from
fresh state if someone pushed in between.
"""

from __future__ import annotations

import json
import string
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from waveline.cli.ops import CliError
from waveline.shared.config import Author, RepoConfig, Settings
from waveline.shared.errors import GitFailure, PushRejected
from waveline.shared.gitengine.repo import ConfigRepo, Credentials
from waveline.shared.names import check_relative_path
from waveline.shared.topics import Topics

DEFAULT_MESSAGE = "[Auto] Automated commit to write $PLUGIN_IMAGE_TAG to $PLUGIN_DESTINATION_FILE"


def is_plugin_run(env: Mapping[str, str]) -> bool:
    return "PLUGIN_GIT_REPO" in env and "PLUGIN_IMAGE_TAG" in env


def _need(env: Mapping[str, str], name: str) -> str:
    value = env.get(f"PLUGIN_{name}", "").strip()
    if not value:
        raise CliError(f"PLUGIN_{name} is required")
    return value


def run(env: Mapping[str, str], workdir: Path | None = None) -> str:
    """Commit ``PLUGIN_IMAGE_TAG`` into ``PLUGIN_DESTINATION_FILE``; returns a summary."""
    branch = env.get("PLUGIN_BRANCH", "main") or "main"
    tag = _need(env, "IMAGE_TAG")
    try:
        path = check_relative_path(_need(env, "DESTINATION_FILE"))
        config = RepoConfig(
            url=_need(env, "GIT_REPO"),
            watched_branch=branch,
            auto_branch=branch,
            author=Author(
                name=env.get("PLUGIN_AUTHOR_NAME") or "waveline",
                email=env.get("PLUGIN_AUTHOR_EMAIL") or "waveline@localhost",
            ),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    message = string.Template(env.get("PLUGIN_COMMIT_MESSAGE") or DEFAULT_MESSAGE).safe_substitute(
        env
    )
    creds = Credentials(token=env.get("PLUGIN_ACCESS_TOKEN") or None)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        repo = ConfigRepo("plugin", config, Path(tmp) / "repo.git", creds)
        for attempt in (1, 2):
            try:
                repo.fetch()
                tip = repo.remote_ref(branch)
                if tip is None:
                    raise CliError(f"branch {branch!r} does not exist in {config.url}")
                new = repo.create_commit(tip, {path: (tag + "\n").encode()}, message + "\n")
                if new is None:
                    return f"{path} already holds {tag} on {branch}; nothing to commit"
                repo.push({branch: (tip, new)})
                return f"committed {tag} to {path} on {branch} as {new}"
            except PushRejected:
                if attempt == 2:
                    raise
            except GitFailure as exc:
                raise CliError(str(exc)) from exc
    raise AssertionError("unreachable")


async def produce(settings: Settings, doc: dict[str, Any]) -> None:
    """Produce the image set document to ``waveline.images`` (acks=all)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            Topics(settings.topic_prefix).images,
            json.dumps(doc).encode(),
            key=str(doc["pipeline"]).encode(),
        )
    finally:
        await producer.stop()
