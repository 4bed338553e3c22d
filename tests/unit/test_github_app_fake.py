"""GitHub App tokens and repository_dispatch against the fake GitHub (an aiohttp server on
loopback, no broker): the fake verifies the App's JWT, tokens expire and are renewed, a
revoked one is replaced after a 401, GitHub's refusals are permanent errors that say why, and
no token reaches a log line."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pygit2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from tests.fakegithub import FakeGitHub
from waveline.services.notifier.dispatch import DispatchTarget, send_dispatch
from waveline.shared.forge import ForgeError, GitHubForge
from waveline.shared.forge.github_app import AppTokens, GitHubAppError

pytestmark = pytest.mark.timeout(30)

REPO = "acme/cfg-app"
APP_ID = "31337"
STATIC_TOKEN = "ghp_static_token_for_app_tests_5e2f"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def gh(tmp_path: Path, key: rsa.RSAPrivateKey) -> AsyncIterator[FakeGitHub]:
    bare = tmp_path / "cfg-app.git"
    pygit2.init_repository(str(bare), bare=True)
    async with FakeGitHub({REPO: bare}, token=STATIC_TOKEN) as fake:
        fake.add_app(APP_ID, key.public_key(), installation_id=77, token_ttl_s=2.5)
        yield fake


async def test_the_fake_verifies_the_app_jwt(gh: FakeGitHub, key: rsa.RSAPrivateKey) -> None:
    async with asyncio.timeout(10):
        good = AppTokens(APP_ID, key, api_url=gh.url, repository=REPO)
        assert (await good.token()).get_secret_value().startswith("ghs_")
        assert good.installation_id == 77  # looked up from the repository
        assert gh.exchanges == 1
        lookup = [r for r in gh.requests if r.path == f"/repos/{REPO}/installation"]
        exchange = [r for r in gh.requests if r.path.endswith("/access_tokens")]
        assert lookup and exchange[0].path == "/app/installations/77/access_tokens"
        await good.close()

        # Another key: GitHub refuses the JWT; permanent, and the message says what to check.
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        wrong_key = AppTokens(APP_ID, other, api_url=gh.url, installation_id=77)
        with pytest.raises(GitHubAppError) as info:
            await wrong_key.token()
        assert info.value.status == 401 and not info.value.retriable
        assert "refused GitHub App 31337's JWT" in str(info.value)
        assert "private key" in str(info.value)
        await wrong_key.close()

        # Another issuer: no such App.
        wrong_iss = AppTokens("999", key, api_url=gh.url, installation_id=77)
        with pytest.raises(GitHubAppError, match="Integration not found"):
            await wrong_iss.token()
        await wrong_iss.close()

        # Not installed there: a permanent error naming the repository.
        elsewhere = AppTokens(APP_ID, key, api_url=gh.url, repository="acme/other")
        with pytest.raises(GitHubAppError, match="not installed on acme/other") as info:
            await elsewhere.token()
        assert not info.value.retriable
        await elsewhere.close()

        # The fake refuses what GitHub refuses: an expired JWT, one too far ahead.
        now = int(time.time())
        url = f"{gh.url}/app/installations/77/access_tokens"
        async with aiohttp.ClientSession() as session:
            for claims, message in (
                ({"iat": now - 700, "exp": now - 60, "iss": APP_ID}, "Expiration time"),
                ({"iat": now - 60, "exp": now + 3600, "iss": APP_ID}, "too far in the future"),
            ):
                token = jwt.encode(claims, key, algorithm="RS256")
                headers = {"Authorization": f"Bearer {token}"}
                async with session.post(url, headers=headers) as resp:
                    assert resp.status == 401
                    assert message in (await resp.json())["message"]
        assert gh.exchanges == 1


async def test_rest_calls_keep_working_past_token_expiry(
    gh: FakeGitHub, key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = AppTokens(APP_ID, key, api_url=gh.url, repository=REPO)
    async with asyncio.timeout(15), GitHubForge(gh.url, token=tokens) as forge:
        await forge.repository_dispatch(REPO, "waveline-promotion", {"n": 1})
        first = gh.requests[-1].headers["Authorization"]
        await asyncio.sleep(2.6)  # past the first token's 2.5 s life
        await forge.repository_dispatch(REPO, "waveline-promotion", {"n": 2})
        second = gh.requests[-1].headers["Authorization"]
        assert first != second
        assert gh.exchanges == 2  # renewed before use, never refused for expiry
        assert gh.expired_refusals == 0
        assert [d.client_payload["n"] for d in gh.dispatches] == [1, 2]

        # A revoked token: 401, a new token, the same request again.
        gh.revoke_installation_tokens()
        await forge.repository_dispatch(REPO, "waveline-promotion", {"n": 3})
        assert gh.exchanges == 3
        assert gh.expired_refusals == 1
        assert [d.client_payload["n"] for d in gh.dispatches] == [1, 2, 3]
        assert tokens.exchanges == 3
    assert gh.minted and not any(token in caplog.text for token in gh.minted)
    assert "token minted" in caplog.text


async def test_dispatch_is_checked_as_github_does(gh: FakeGitHub) -> None:
    forge = GitHubForge(gh.url, token=SecretStr(STATIC_TOKEN))
    async with asyncio.timeout(10), forge:
        with pytest.raises(ForgeError, match="at most 10") as info:
            await forge.repository_dispatch(REPO, "e", {str(i): i for i in range(11)})
        assert not info.value.retriable
        with pytest.raises(ForgeError, match="1-100 characters"):
            await forge.repository_dispatch(REPO, "x" * 101, {})
        assert not gh.dispatches and not any(r.path.endswith("/dispatches") for r in gh.requests)
        # What the client refuses, the fake refuses too (422), as GitHub does.
        async with aiohttp.ClientSession() as session:
            headers = {"Authorization": f"Bearer {STATIC_TOKEN}"}
            url = f"{gh.url}/repos/{REPO}/dispatches"
            bad: Any
            for bad in (
                {"client_payload": {}},
                {"event_type": "x" * 101},
                {"event_type": "e", "client_payload": {str(i): i for i in range(11)}},
                {"event_type": "e", "client_payload": [1]},
            ):
                async with session.post(url, json=bad, headers=headers) as resp:
                    assert resp.status == 422, bad
            async with session.post(url, json={"event_type": "e"}) as resp:
                assert resp.status == 401
        assert not gh.dispatches

        # The notifier's view: 204 delivered, 422 given up, 502 retried.
        target = DispatchTarget(REPO, "promote", forge)
        body = b'{"client_payload":{"pipeline":"app"},"event_type":"promote"}'
        attempt = await send_dispatch(target, body)
        assert (attempt.outcome, attempt.status) == ("delivered", 204)
        assert gh.dispatches[-1].client_payload == {"pipeline": "app"}
        gh.fail_next(422, path_contains="/dispatches")
        attempt = await send_dispatch(target, body)
        assert (attempt.outcome, attempt.status) == ("give_up", 422)
        assert attempt.error is not None and "422" in attempt.error
        gh.fail_next(502, path_contains="/dispatches")
        attempt = await send_dispatch(target, body)
        assert (attempt.outcome, attempt.status) == ("retry", 502)
        assert len(gh.dispatches) == 1


async def test_a_failed_renewal_keeps_the_token_until_it_expires(
    gh: FakeGitHub, key: rsa.RSAPrivateKey
) -> None:
    gh.add_app("777", key.public_key(), installation_id=78, token_ttl_s=3600)
    now = [1000.0]
    tokens = AppTokens("777", key, api_url=gh.url, installation_id=78, clock=lambda: now[0])
    async with asyncio.timeout(10):
        first = await tokens.token()
        now[0] += 3400  # due for renewal (5 minutes before the hour), not expired
        gh.fail_next(502, path_contains="/access_tokens")
        assert await tokens.token() == first
        now[0] += 300  # expired by now: GitHub's failure is the caller's
        gh.fail_next(502, path_contains="/access_tokens")
        with pytest.raises(GitHubAppError) as info:
            await tokens.token()
        assert info.value.retriable and info.value.status == 502
        fresh = await tokens.token()  # GitHub is back
        assert fresh != first and tokens.exchanges == 2
    await tokens.close()
