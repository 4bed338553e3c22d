"""Forged git commands through real Kafka, PostgreSQL and the git-writer against a bare
remote: whoever can produce to ``waveline.git.commands`` still cannot introduce a set into a
later wave, name a branch of their own, promote from a commit not on watched, or roll a wave
back to files no wave ran. Each is answered with a ``rejected`` event naming the rule
(services/git_writer/admit.py) and the remote's refs stay as they were; what Waveline itself
sends, next to them, is still committed."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygit2
import pytest
from aiokafka import AIOKafkaConsumer

from tests.support import count_topic, introduce, make_config, produce, running
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.models.git import (
    FastForward,
    IntroduceImages,
    PromoteWave,
    RollbackWave,
)

pytestmark = pytest.mark.timeout(90)

Cmd = IntroduceImages | PromoteWave | RollbackWave | FastForward
SET_A = f"{1:040x}"  # tests.support.introduce(n=1)
SET_B = f"{2:040x}"


def refs(bare: Path) -> dict[str, str]:
    """Every ref of the remote and the commit it points at."""
    repo = pygit2.Repository(str(bare))
    return {name: str(repo.references[name].target) for name in repo.references}


def now() -> datetime:
    return datetime.now(UTC)


def ff(sha: str) -> FastForward:
    return FastForward(command_id=uuid.uuid4(), repo="cfg-app", issued_at=now(), sha=sha)


def promote(
    deployed: str,
    app_sha: str = SET_A,
    src: str = "staging",
    dst: str = "internal",
    branch: str | None = None,
) -> PromoteWave:
    return PromoteWave(
        command_id=uuid.uuid4(),
        repo="cfg-app",
        issued_at=now(),
        pipeline="app",
        from_wave=src,
        to_wave=dst,
        app_sha=app_sha,
        deployed_sha=deployed,
        branch=branch,
    )


def rollback(to_sha: str, app_sha: str, wave: str) -> RollbackWave:
    return RollbackWave(
        command_id=uuid.uuid4(),
        repo="cfg-app",
        issued_at=now(),
        pipeline="app",
        wave=wave,
        app_sha=app_sha,
        to_sha=to_sha,
    )


def into(cmd: IntroduceImages, **changes: Any) -> IntroduceImages:
    """``cmd`` with other fields and a command id of its own: a forged variant."""
    return cmd.model_copy(update={"command_id": uuid.uuid4(), **changes})


class Writer:
    """Sends commands to the git-writer and reads its events as they come."""

    def __init__(self, settings: Settings, consumer: AIOKafkaConsumer) -> None:
        self._settings = settings
        self._consumer = consumer
        self._seen: dict[str, dict[str, Any]] = {}

    async def send(self, *commands: Cmd) -> list[dict[str, Any]]:
        """Produce ``commands`` in order and return the event of each."""
        for cmd in commands:
            body = cmd.model_dump_json().encode()
            await produce(self._settings, "waveline.git.commands", [body], key=b"cfg-app")
        wanted = [str(c.command_id) for c in commands]
        async with asyncio.timeout(30):
            while not all(i in self._seen for i in wanted):
                batch = await self._consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        event = json.loads(record.value)
                        self._seen.setdefault(event["command_id"], event)
        return [self._seen[i] for i in wanted]

    async def committed(self, cmd: Cmd, outcome: str = "committed") -> str:
        (event,) = await self.send(cmd)
        assert event["outcome"] == outcome, event
        return str(event["sha"])

    async def refused(
        self, bare: Path, commands: Sequence[Cmd], rule: str, reasons: Sequence[str]
    ) -> None:
        """Each of ``commands`` is rejected for ``rule`` with its reason, and no ref of the
        remote moved."""
        before = refs(bare)
        events = await self.send(*commands)
        for cmd, event, reason in zip(commands, events, reasons, strict=True):
            assert (event["outcome"], event["rule"]) == ("rejected", rule), (cmd, event)
            assert event["reason"] == f"{rule}: {reason}", event
            assert event["sha"] is None
        assert refs(bare) == before


@asynccontextmanager
async def git_writer(
    settings: Settings, config: WavelineConfig, secrets: Secrets
) -> AsyncIterator[Writer]:
    consumer = AIOKafkaConsumer(
        f"{settings.topic_prefix}waveline.git.events",
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    try:
        async with running(["git-writer"], settings, config, secrets):
            yield Writer(settings, consumer)
    finally:
        await consumer.stop()
    # A rejection is the command's answer, not a failure: nothing is dead-lettered.
    assert await count_topic(settings.kafka_bootstrap, f"{settings.topic_prefix}waveline.dlq") == 0


async def test_a_forged_introduction_into_a_later_wave_is_rejected(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    legit = introduce()
    async with git_writer(settings, config, secrets) as writer:
        await writer.refused(
            remote,
            [into(legit, wave="production"), into(legit, wave="internal")],
            "introduce_first_wave",
            [
                "pipeline 'app' introduces image sets into 'staging' only, not 'production'",
                "pipeline 'app' introduces image sets into 'staging' only, not 'internal'",
            ],
        )
        assert "refs/heads/auto" not in refs(remote)
        # The same set, into the first wave, as the promoter sends it: committed.
        await writer.committed(legit)
    assert "refs/heads/auto" in refs(remote)


async def test_a_forged_branch_is_rejected(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    """staging is promoted by commit, internal by pull request on its template's branch."""
    doc = make_config(remote.as_uri()).model_dump(mode="json")
    doc["repos"]["cfg-app"]["forge"] = {"kind": "github", "token_env": "ADMIT_FORGE_TOKEN"}
    doc["pipelines"]["app"]["waves"][1]["strategy"] = {
        "kind": "pull-request",
        "branch": "promote/{pipeline}/{wave}",
    }
    config = WavelineConfig.model_validate(doc)
    async with git_writer(settings, config, secrets) as writer:
        c1 = await writer.committed(introduce())
        await writer.committed(ff(c1), "fast_forwarded")
        await writer.refused(
            remote,
            [into(introduce(n=2), branch=b) for b in ("evil", "master", "promote/app/staging")],
            "branch_template",
            [
                f"wave 'staging' is promoted by commit on auto: the command may name no branch,"
                f" got {b!r}"
                for b in ("evil", "master", "promote/app/staging")
            ],
        )
        forged = ["master", "auto", "promote/app/production", "waveline/app/internal"]
        await writer.refused(
            remote,
            [promote(c1, branch=b) for b in forged],
            "branch_template",
            [
                f"wave 'internal' is promoted by pull request on branch 'promote/app/internal',"
                f" got {b!r}"
                for b in forged
            ],
        )
        assert set(refs(remote)) == {"refs/heads/master", "refs/heads/auto"}
        # The template's branch, as the promoter names it: pushed.
        pushed = await writer.committed(promote(c1, branch="promote/app/internal"))
    assert refs(remote)["refs/heads/promote/app/internal"] == pushed


async def test_a_promotion_from_a_commit_not_on_watched_is_rejected(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    async with git_writer(settings, config, secrets) as writer:
        c1 = await writer.committed(introduce())  # on auto: its checks have not passed
        unknown = "9" * 40  # on no branch at all
        await writer.refused(
            remote,
            [promote(c1), promote(unknown)],
            "promote_from_watched",
            [
                f"deployed commit {c1} is not on master",
                f"deployed commit {unknown} is not on master",
            ],
        )
        await writer.committed(ff(c1), "fast_forwarded")
        # On watched now, but not holding the set the command names.
        await writer.refused(
            remote,
            [promote(c1, app_sha=SET_B)],
            "promote_from_watched",
            [f"wave 'staging' holds set {SET_A} at {c1}, not {SET_B}"],
        )
        # From watched, the set staging holds there: committed.
        await writer.committed(promote(c1))


async def test_a_forged_rollback_to_files_no_wave_ran_is_rejected(
    settings: Settings, config: WavelineConfig, secrets: Secrets, remote: Path
) -> None:
    async with git_writer(settings, config, secrets) as writer:
        c1 = await writer.committed(introduce(n=1))
        await writer.committed(ff(c1), "fast_forwarded")  # staging runs set A at c1
        c2 = await writer.committed(introduce(n=2))  # set B, on auto only
        await writer.refused(
            remote,
            [
                # Set B never reached watched: no wave ran it.
                rollback(c2, SET_B, "staging"),
                rollback(c2, SET_B, "production"),
                # Production never held anything: its files at c1 are empty.
                rollback(c1, SET_A, "production"),
                # Staging's files at c1 are set A's, whatever the command calls them.
                rollback(c1, SET_B, "staging"),
            ],
            "rollback_to_ran",
            [
                f"rollback commit {c2} is not on master",
                f"rollback commit {c2} is not on master",
                f"wave 'production' holds no images at {c1}",
                f"wave 'staging' holds set {SET_A} at {c1}, not {SET_B}",
            ],
        )
        # Back to what staging ran, under its own name: committed on auto over set B.
        await writer.committed(rollback(c1, SET_A, "staging"))
