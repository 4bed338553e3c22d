"""The pull-request strategy's forge side — auto-merge, and a pull request closed unmerged —
through the notifier on real Kafka and Postgres
against the fake GitHub: the pull request opened for a promotion branch is merged once every
required check of the repo is green on its head — not before, and not on another sha."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pygit2
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from tests.fakegithub import FakeGitHub
from tests.support import APP_SHA, branch_log, make_config, read_topic, running, wait_for
from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.gitengine import trailers
from waveline.shared.models.base import Message, utcnow
from waveline.shared.models.checks import CheckReported
from waveline.shared.models.git import GitEvent
from waveline.shared.models.pulls import PullRequestReported

pytestmark = pytest.mark.timeout(90)
FORGE_TOKEN = "forge-token-auto-merge-3c1d9e"
BRANCH = "waveline/app/production"


def promotion_branch(remote: Path, tag: str = "x") -> str:
    """A promotion commit on ``BRANCH``, built on master, as git-writer would (force-)push
    it."""
    repo = pygit2.Repository(str(remote))
    master = repo.references["refs/heads/master"].peel(pygit2.Commit)
    blob = repo.create_blob(f'{{"Service1": "docker.example.com/service1:{tag}"}}\n'.encode())
    builder = repo.TreeBuilder(master.tree)
    images = repo.TreeBuilder()
    images.insert("tags.json", blob, pygit2.enums.FileMode.BLOB)
    production = repo.TreeBuilder()
    production.insert("production", images.write(), pygit2.enums.FileMode.TREE)
    builder.insert("promoted", production.write(), pygit2.enums.FileMode.TREE)
    who = pygit2.Signature("waveline", "waveline@example.com")
    message = trailers.format_message(
        "chore(app): promote", "", {trailers.PIPELINE: "app", trailers.APP_SHA: APP_SHA}
    )
    sha = repo.create_commit(None, who, who, message, builder.write(), [master.id])
    repo.references.create(f"refs/heads/{BRANCH}", sha, force=True)
    return str(sha)


async def produce(settings: Settings, topic: str, key: str, *messages: Message) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for m in messages:
            await producer.send_and_wait(
                f"{settings.topic_prefix}{topic}", m.to_bytes(), key=key.encode()
            )
    finally:
        await producer.stop()


def check(sha: str, context: str, state: str) -> CheckReported:
    return CheckReported(
        event_id=uuid.uuid4(),
        repo="cfg-app",
        sha=sha,
        context=context,
        state=state,
        reported_at=utcnow(),
    )


async def test_auto_merge_waits_for_every_required_check(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    head = promotion_branch(remote)
    async with FakeGitHub({"remote/cfg-app": remote}, token=FORGE_TOKEN) as gh:
        doc = make_config(remote.as_uri()).model_dump(mode="json")
        doc["repos"]["cfg-app"]["required_checks"] = ["ci/validate", "ci/policy"]
        doc["repos"]["cfg-app"]["forge"] = {"api_url": gh.url, "token_env": "GH_TOKEN"}
        doc["pipelines"]["app"]["waves"][2]["strategy"] = {
            "kind": "pull-request",
            "auto_merge": True,
            "merge_method": "merge",
        }
        config = WavelineConfig.model_validate(doc)
        secrets = secrets.model_copy(update={"named": {"GH_TOKEN": SecretStr(FORGE_TOKEN)}})
        promotion = uuid.uuid4()
        event = GitEvent(
            event_id=uuid.uuid4(),
            command_id=promotion,
            command_kind="promote",
            repo="cfg-app",
            outcome="committed",
            branch=BRANCH,
            sha=head,
            pipeline="app",
            wave="production",
            app_sha=APP_SHA,
            values_before={"Service1": {"tag": "docker.example.com/service1:old"}},
            values_after={"Service1": {"tag": "docker.example.com/service1:new"}},
            trailers={trailers.APP_SHA: APP_SHA},
            at=utcnow(),
        )
        async with running(["notifier"], settings, config, secrets):
            await produce(settings, "waveline.git.events", "cfg-app", event)
            await wait_for(lambda: bool(gh.numbers("remote/cfg-app")), what="pull request")
            number = gh.numbers("remote/cfg-app")[0]
            body = gh.pull("remote/cfg-app", number)["body"]
            assert "service1:old" in body
            assert "service1:new" in body
            # One required check green, the other still pending, and a green check on
            # another sha: nothing is merged.
            await produce(
                settings,
                "waveline.checks",
                "cfg-app",
                check(head, "ci/validate", "success"),
                check(head, "ci/policy", "pending"),
                check("f" * 40, "ci/policy", "success"),
            )
            opened = await read_topic(
                settings.kafka_bootstrap,
                f"{settings.topic_prefix}waveline.promotions",
                until=lambda ms: any(m["status"] == "opened" for m in ms),
            )
            assert opened[0]["url"].endswith(f"/pull/{number}")
            assert gh.pull("remote/cfg-app", number)["state"] == "open"
            await produce(
                settings, "waveline.checks", "cfg-app", check(head, "ci/policy", "success")
            )
            done = await read_topic(
                settings.kafka_bootstrap,
                f"{settings.topic_prefix}waveline.promotions",
                until=lambda ms: any(m["status"] == "done" for m in ms),
            )
        merged = gh.pull("remote/cfg-app", number)
        assert merged["merged"] is True
        master = branch_log(str(remote), "master")[0]
        assert [str(p) for p in master.parent_ids][1] == head
        final: list[Any] = [m for m in done if m["status"] == "done"]
        assert final[0]["promotion_id"] == str(promotion)
        merges = [
            r for r in gh.requests if r.method == "PUT" and r.path.endswith(f"/{number}/merge")
        ]
        assert len(merges) == 1
        assert merges[0].json["sha"] == head


async def test_closed_unmerged_pull_request_cancels_the_promotion(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    head = promotion_branch(remote)
    async with FakeGitHub({"remote/cfg-app": remote}, token=FORGE_TOKEN) as gh:
        doc = make_config(remote.as_uri()).model_dump(mode="json")
        doc["repos"]["cfg-app"]["forge"] = {"api_url": gh.url, "token_env": "GH_TOKEN"}
        doc["pipelines"]["app"]["waves"][2]["strategy"] = {"kind": "pull-request"}
        config = WavelineConfig.model_validate(doc)
        secrets = secrets.model_copy(update={"named": {"GH_TOKEN": SecretStr(FORGE_TOKEN)}})
        promotion = uuid.uuid4()
        async with running(["notifier"], settings, config, secrets):
            await produce(
                settings,
                "waveline.git.events",
                "cfg-app",
                GitEvent(
                    event_id=uuid.uuid4(),
                    command_id=promotion,
                    command_kind="promote",
                    repo="cfg-app",
                    outcome="committed",
                    branch=BRANCH,
                    sha=head,
                    pipeline="app",
                    wave="production",
                    app_sha=APP_SHA,
                    at=utcnow(),
                ),
            )
            await wait_for(lambda: bool(gh.numbers("remote/cfg-app")), what="pull request")
            number = gh.numbers("remote/cfg-app")[0]
            await gh.close("remote/cfg-app", number)
            await produce(
                settings,
                "waveline.pulls",
                "cfg-app",
                PullRequestReported(
                    event_id=uuid.uuid4(),
                    repo="cfg-app",
                    number=number,
                    action="closed",
                    state="closed",
                    merged=False,
                    head_ref=BRANCH,
                    head_sha=head,
                    base_ref="master",
                    reported_at=utcnow(),
                ),
            )
            events = await read_topic(
                settings.kafka_bootstrap,
                f"{settings.topic_prefix}waveline.promotions",
                until=lambda ms: any(m["status"] == "cancelled" for m in ms),
            )
        cancelled = [m for m in events if m["status"] == "cancelled"]
        assert cancelled[0]["promotion_id"] == str(promotion)
        assert "closed unmerged" in cancelled[0]["detail"]
        assert not any(m["status"] == "done" for m in events)


async def test_late_redelivery_of_an_older_promotion_changes_nothing(
    settings: Settings, secrets: Secrets, remote: Path
) -> None:
    """A promotes, B replaces it on the same branch, then A's git event comes again (a crash
    before the offset commit): the pull request stays B's, B is not superseded, and the
    merge completes B."""
    head_a = promotion_branch(remote)
    async with FakeGitHub({"remote/cfg-app": remote}, token=FORGE_TOKEN) as gh:
        doc = make_config(remote.as_uri()).model_dump(mode="json")
        doc["repos"]["cfg-app"]["forge"] = {"api_url": gh.url, "token_env": "GH_TOKEN"}
        doc["pipelines"]["app"]["waves"][2]["strategy"] = {"kind": "pull-request"}
        config = WavelineConfig.model_validate(doc)
        secrets = secrets.model_copy(update={"named": {"GH_TOKEN": SecretStr(FORGE_TOKEN)}})
        a, b = uuid.uuid4(), uuid.uuid4()
        b_sha = "b" * 40

        def event(promotion: uuid.UUID, sha: str, app_sha: str, at: Any) -> GitEvent:
            return GitEvent(
                event_id=uuid.uuid4(),
                command_id=promotion,
                command_kind="promote",
                repo="cfg-app",
                outcome="committed",
                branch=BRANCH,
                sha=sha,
                pipeline="app",
                wave="production",
                app_sha=app_sha,
                at=at,
            )

        first = event(a, head_a, APP_SHA, utcnow())
        async with running(["notifier"], settings, config, secrets):
            await produce(settings, "waveline.git.events", "cfg-app", first)
            await wait_for(lambda: bool(gh.numbers("remote/cfg-app")), what="pull request")
            number = gh.numbers("remote/cfg-app")[0]
            head_b = promotion_branch(remote, "b")  # git-writer force-pushed B's commit
            await produce(
                settings, "waveline.git.events", "cfg-app", event(b, head_b, b_sha, utcnow())
            )
            await wait_for(
                lambda: b_sha in gh.pull("remote/cfg-app", number)["body"], what="B's body"
            )
            await produce(settings, "waveline.git.events", "cfg-app", first)  # late copy
            events = await read_topic(
                settings.kafka_bootstrap,
                f"{settings.topic_prefix}waveline.promotions",
                until=lambda ms: any(
                    m["status"] == "superseded" and m["promotion_id"] == str(a) for m in ms
                ),
            )
            await asyncio.sleep(2.0)  # let the late copy be handled (it must change nothing)
            assert b_sha in gh.pull("remote/cfg-app", number)["body"]
            await gh.close("remote/cfg-app", number)  # as merged below, by the webhook
            await produce(
                settings,
                "waveline.pulls",
                "cfg-app",
                PullRequestReported(
                    event_id=uuid.uuid4(),
                    repo="cfg-app",
                    number=number,
                    action="closed",
                    state="closed",
                    merged=True,
                    head_ref=BRANCH,
                    head_sha=head_b,
                    base_ref="master",
                    merge_sha=head_b,
                    reported_at=utcnow(),
                ),
            )
            events = await read_topic(
                settings.kafka_bootstrap,
                f"{settings.topic_prefix}waveline.promotions",
                until=lambda ms: any(m["status"] == "done" for m in ms),
            )
        by_promotion = {(m["promotion_id"], m["status"]) for m in events}
        assert (str(b), "done") in by_promotion
        assert (str(b), "superseded") not in by_promotion
        assert (str(a), "done") not in by_promotion
        assert len(gh.numbers("remote/cfg-app")) == 1
