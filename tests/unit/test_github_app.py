"""GitHub App authentication and repository_dispatch, the pure parts: the JWT, the key, the
renewal schedule, the config rules, and the dispatch body."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import SecretStr, ValidationError

from tests.support import make_config
from waveline.services.git_writer.client import RepoProcess
from waveline.services.git_writer.host import HostInit
from waveline.services.notifier.dispatch import dispatch_delivery, payload_data
from waveline.services.notifier.events import promotion_data, promotion_delivery
from waveline.shared.config import Secrets, WavelineConfig
from waveline.shared.errors import ConfigError, GitFailure, GitUnreachable
from waveline.shared.forge.base import ForgeError
from waveline.shared.forge.github_app import (
    AppTokens,
    GitHubAppError,
    StaticToken,
    app_jwt,
    load_private_key,
    renew_in,
    token_source,
)
from waveline.shared.models.base import utcnow
from waveline.shared.models.images import ImageRef
from waveline.shared.models.promotions import PromotionEvent

KEY_ENV = "TEST_APP_KEY"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_the_jwt_is_what_github_asks_for(key: rsa.RSAPrivateKey) -> None:
    now = time.time()
    token = app_jwt("12345", key, now)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, key.public_key(), algorithms=["RS256"], issuer="12345")
    assert claims["iat"] == int(now) - 60  # backdated against clock drift
    assert 0 < claims["exp"] - now <= 600  # at most 10 minutes ahead
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other.public_key(), algorithms=["RS256"], issuer="12345")


def test_a_private_key_is_read_or_refused_clearly(key: rsa.RSAPrivateKey) -> None:
    text = pem(key)
    assert load_private_key(SecretStr(text), "X").key_size == 2048
    # A key pasted into an env file with \n escapes is read too.
    assert load_private_key(SecretStr(text.replace("\n", "\\n")), "X").key_size == 2048
    with pytest.raises(ConfigError, match="KEY_VAR: the GitHub App's private key is not set"):
        load_private_key(None, "KEY_VAR")
    garbage = "-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5LXNlY3JldC12YWx1ZQ==\n-----END"
    with pytest.raises(ConfigError, match="not a usable PEM private key") as info:
        load_private_key(SecretStr(garbage), "KEY_VAR")
    assert "bm90LWEta2V5" not in str(info.value)
    elliptic = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ConfigError, match="RSA"):
        load_private_key(SecretStr(pem(elliptic)), "KEY_VAR")


def test_tokens_are_renewed_a_margin_before_they_expire() -> None:
    assert renew_in(3600) == 3300  # five minutes before an hour's token ends
    assert renew_in(2) == 1.5  # a short life: at three quarters of it
    assert renew_in(0) == 0


def app_config(**forge: Any) -> WavelineConfig:
    doc = make_config("https://github.example.com/acme/cfg-app.git").model_dump(mode="json")
    doc["repos"]["cfg-app"]["token_env"] = None
    doc["repos"]["cfg-app"]["forge"] = {"app": {"app_id": 12345, "private_key_env": KEY_ENV}}
    doc["repos"]["cfg-app"]["forge"].update(forge)
    return WavelineConfig.model_validate(doc)


def test_an_app_forge_config_is_validated_at_load() -> None:
    config = app_config()
    repo = config.repos["cfg-app"]
    assert repo.forge is not None and repo.forge.app is not None
    assert repo.forge.app.app_id == "12345"
    assert repo.git_uses_app()
    assert KEY_ENV in config.secret_env_names()
    with pytest.raises(ValidationError, match="app or token_env, not both"):
        app_config(token_env="MY_GITHUB_TOKEN")
    with pytest.raises(ValidationError, match="GitHub only"):
        app_config(kind="gitlab")
    with pytest.raises(ValidationError, match="app_id"):
        app_config(app={"app_id": "not an id", "private_key_env": KEY_ENV})
    with pytest.raises(ValidationError, match="installation_id"):
        app_config(app={"app_id": 1, "installation_id": 0})
    # A repo with a git token of its own keeps it for git.
    doc = config.model_dump(mode="json")
    doc["repos"]["cfg-app"]["token_env"] = "GIT_TOKEN"
    assert not WavelineConfig.model_validate(doc).repos["cfg-app"].git_uses_app()


def test_an_app_token_never_crosses_plain_http_unless_allowed() -> None:
    doc = app_config().model_dump(mode="json")
    doc["repos"]["cfg-app"]["url"] = "http://git.example.com/acme/cfg-app.git"
    with pytest.raises(ValidationError, match="GitHub App token"):
        WavelineConfig.model_validate(doc)
    doc["repos"]["cfg-app"]["allow_insecure_http"] = True
    assert WavelineConfig.model_validate(doc).repos["cfg-app"].git_uses_app()


def test_token_source_needs_a_usable_key(key: rsa.RSAPrivateKey) -> None:
    config = app_config()
    repo = config.repos["cfg-app"]
    with pytest.raises(ConfigError, match=f"repos.cfg-app.forge.app \\({KEY_ENV}\\)"):
        token_source("cfg-app", repo, Secrets())
    with pytest.raises(ConfigError, match="not a usable PEM"):
        token_source("cfg-app", repo, Secrets(named={KEY_ENV: SecretStr("nope")}))
    tokens = token_source("cfg-app", repo, Secrets(named={KEY_ENV: SecretStr(pem(key))}))
    assert isinstance(tokens, AppTokens)
    assert tokens.installation_id is None  # looked up from acme/cfg-app on first use
    assert "BEGIN" not in repr(tokens)
    plain = app_config().model_dump(mode="json")
    plain["repos"]["cfg-app"]["forge"] = {"token_env": "FORGE_TOKEN"}
    plain_repo = WavelineConfig.model_validate(plain).repos["cfg-app"]
    fixed = token_source("cfg-app", plain_repo, Secrets(named={"FORGE_TOKEN": SecretStr("t")}))
    assert isinstance(fixed, StaticToken)


def dispatch_config(strategy: dict[str, Any], forge: dict[str, Any] | None) -> WavelineConfig:
    doc = make_config("https://github.example.com/acme/cfg-app.git").model_dump(mode="json")
    if forge is not None:
        doc["repos"]["cfg-app"]["forge"] = forge
    doc["pipelines"]["app"]["waves"][2]["strategy"] = strategy
    return WavelineConfig.model_validate(doc)


def test_repository_dispatch_config() -> None:
    strategy = {"kind": "webhook", "format": "repository_dispatch"}
    config = dispatch_config(strategy, {"token_env": "FORGE_TOKEN"})
    chosen = config.pipelines["app"].strategy_of("production")
    assert chosen.dispatch.event_type_for("app", "production") == "waveline-promotion"
    with pytest.raises(ValidationError, match=r"repository_dispatch needs repos\.cfg-app\.forge"):
        dispatch_config(strategy, None)
    long_type = {**strategy, "dispatch": {"event_type": "x" * 90 + "-{wave}"}}
    with pytest.raises(ValidationError, match="at most 100"):
        dispatch_config(long_type, {"token_env": "FORGE_TOKEN"})
    templated = {**strategy, "dispatch": {"event_type": "promote-{pipeline}-{wave}"}}
    chosen = (
        dispatch_config(templated, {"token_env": "T"}).pipelines["app"].strategy_of("production")
    )
    assert chosen.dispatch.event_type_for("app", "production") == "promote-app-production"
    with pytest.raises(ValidationError, match="owner/name"):
        dispatch_config({**strategy, "dispatch": {"repository": "../x"}}, {"token_env": "T"})
    # The CloudEvents format still needs an address.
    with pytest.raises(ValidationError, match="webhook needs url or secret_env"):
        dispatch_config({"kind": "webhook"}, {"token_env": "T"})


def test_the_dispatch_body_carries_what_the_cloudevent_does() -> None:
    event = PromotionEvent(
        event_id=uuid.uuid4(),
        promotion_id=uuid.uuid4(),
        pipeline="app",
        from_wave="internal",
        to_wave="production",
        app_sha="a" * 40,
        images={"svc": ImageRef.model_validate({"Tag": "r/svc:1", "Digest": "sha256:" + "b" * 64})},
        cfg_sha="c" * 40,
        strategy="webhook",
        status="requested",
        at=utcnow(),
    )
    data = promotion_data(event)
    delivery = dispatch_delivery(event, data, "promote-production", "t")
    doc = json.loads(delivery.body)
    assert doc["event_type"] == "promote-production"
    payload = doc["client_payload"]
    assert len(payload) <= 10  # GitHub's limit on top-level properties
    assert payload["trailers"]["Autocommit-Event-Id"] == str(event.promotion_id)
    assert payload["trailers"]["Autocommit-Target"] == "production"
    assert payload["result_url"].endswith(f"/promotions/{event.promotion_id}/result")
    # Both formats carry the same data, and the worker reads it back from either.
    cloud = promotion_delivery(event, "t")
    assert payload_data(cloud.body) == payload_data(delivery.body) == json.loads(json.dumps(data))
    assert delivery.delivery_id == cloud.delivery_id == event.promotion_id
    assert dispatch_delivery(event, data, "promote-production", "t").body == delivery.body


class _Failing:
    """A token source GitHub does not serve: ``error`` every time."""

    def __init__(self, error: ForgeError) -> None:
        self.error = error

    async def token(self) -> SecretStr:
        raise self.error

    def refused(self, token: SecretStr) -> None:
        del token

    async def close(self) -> None:
        return None


async def test_no_token_for_git_is_an_outage_or_a_permanent_failure(tmp_path: Path) -> None:
    config = make_config("https://github.example.com/acme/cfg-app.git")
    init = HostInit(
        repo="cfg-app",
        repo_config=config.repos["cfg-app"],
        config=config,
        path=tmp_path / "cfg-app.git",
        log_level="INFO",
        log_secrets=[],
        gil_switch_interval_ms=0.5,
    )
    down = RepoProcess(init, tokens=_Failing(ForgeError("GitHub got no answer", status=None)))
    with pytest.raises(GitUnreachable, match="no GitHub App token for git"):
        await down.build([], False, 1.0)
    refused = GitHubAppError("GitHub refused GitHub App 1's JWT", status=401)
    bad = RepoProcess(init, tokens=_Failing(refused))
    with pytest.raises(GitFailure, match="refused GitHub App 1's JWT") as info:
        await bad.flush()
    assert not info.value.retriable and not isinstance(info.value, GitUnreachable)
    assert down.pid is None and bad.pid is None  # no child started without a token
