"""The log filter masks every secret a process reads, and every piece of one a message may
quote alone: URL passwords, lines of a key, values of a webhook secret's YAML."""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, SecretStr

from waveline.shared.config import Secrets, Settings, WavelineConfig
from waveline.shared.logs import RedactingFilter, named_env_vars, secret_pieces, secret_values

DB_PASSWORD = "db-p@ss:word/42"
DB_URL = "postgresql://waveline:db-p%40ss%3Aword%2F42@db.internal:5432/waveline"
SASL_PASSWORD = "sasl-password-7f3e2d"
GIT_TOKEN = "ghp_gittoken0123456789abcdef"
FORGE_TOKEN = "ghs_forgetoken9876543210"
SCOPED_TOKEN = "team-b-scoped-ci-token-8080"
SSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBzZWNvbmQtbGluZS1vZi1hLWtleS10aGF0LWlzLXNlY3JldAAAAJgAAAAA\n"
    "AAAAC3NzaC1lZDI1NTE5AAAAIHRoaXJkLWxpbmUtb2YtYS1rZXktdGhhdC1pcy1zZWNyZXQ\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
HOOK_TOKEN = "hook-bearer-token-5566"
HOOK_SIGNING = "hook-signing-key-7788"
HOOK_PATH = "/services/T0001/B0002/slackcredential"
PROXY_PASSWORD = "proxy-secret-99"
HEADER_VALUE = "Bearer header-credential-1234"
HOOK_SECRET = (
    f"address: https://hooks.example.com{HOOK_PATH}?k=queryval\n"
    f"proxy: http://proxyuser:{PROXY_PASSWORD}@proxy.internal:3128\n"
    f"token: {HOOK_TOKEN}\n"
    f"signing_key: {HOOK_SIGNING}\n"
    "headers: |\n"
    f"  Authorization: {HEADER_VALUE}\n"
    "  X-Tenant: tenant-alpha\n"
)
APP_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEapp-key-line-one-secret\nline-two-of-the-app-key\n"


def _config() -> WavelineConfig:
    return WavelineConfig.model_validate(
        {
            "repos": {
                "cfg-app": {
                    "url": "https://git.example.com/org/cfg-app.git",
                    "token_env": "GIT_TOKEN_ENV",
                    "ssh_key_env": "SSH_KEY_ENV",
                    "forge": {"token_env": "FORGE_TOKEN_ENV"},
                }
            },
            "pipelines": {
                "app": {
                    "repo": "cfg-app",
                    "layout": {"kind": "images-json"},
                    "strategy": {"kind": "webhook", "secret_env": "HOOK_SECRET_ENV"},
                    "waves": [{"name": "staging", "targets": ["s"]}],
                }
            },
            "auth": {
                "tokens": [
                    {"name": "team-b", "role": "ci", "pipelines": ["app"], "token_env": "TEAM_B"}
                ]
            },
        }
    )


ENV = {
    "GIT_TOKEN_ENV": GIT_TOKEN,
    "SSH_KEY_ENV": SSH_KEY,
    "FORGE_TOKEN_ENV": FORGE_TOKEN,
    "HOOK_SECRET_ENV": HOOK_SECRET,
    "TEAM_B": SCOPED_TOKEN,
    "UNRELATED": "not-named-by-the-config-value",
}


FUTURE_SECRET = "a-secret-setting-added-later"


class _LaterSettings(Settings):
    """A secret setting added later: covered without changing the collection."""

    some_future_secret: SecretStr | None = None


def _logged(values: list[str], message: str, *args: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(values))
    logger = logging.getLogger("test.log_secrets")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


@pytest.fixture
def values() -> Iterator[list[str]]:
    settings = _LaterSettings(
        database_url=SecretStr(DB_URL),
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="waveline",
        kafka_sasl_password=SecretStr(SASL_PASSWORD),
        some_future_secret=SecretStr(FUTURE_SECRET),
    )
    config = _config()
    secrets = Secrets.from_env(config.auth, env=ENV, names=config.secret_env_names())
    yield secret_values(settings, secrets, config, env=ENV)


@pytest.mark.parametrize(
    "leak",
    [
        DB_URL,
        DB_PASSWORD,
        "db-p%40ss%3Aword%2F42",
        base64.b64encode(f"waveline:{DB_PASSWORD}".encode()).decode(),
        SASL_PASSWORD,
        FUTURE_SECRET,
        GIT_TOKEN,
        FORGE_TOKEN,
        SCOPED_TOKEN,
        HOOK_TOKEN,
        HOOK_SIGNING,
        HOOK_PATH + "?k=queryval",
        PROXY_PASSWORD,
        HEADER_VALUE,
        "tenant-alpha",
        *SSH_KEY.splitlines()[1:-1],
    ],
)
def test_every_secret_and_every_piece_is_masked(values: list[str], leak: str) -> None:
    line = _logged(values, "failed talking to %s (retrying)", leak)
    assert leak not in line
    assert "***" in line
    assert "(retrying)" in line


def test_a_single_line_of_an_ssh_key_in_a_library_message_is_masked(values: list[str]) -> None:
    second = SSH_KEY.splitlines()[2]
    line = _logged(values, "libssh2: bad key data near '%s'", second)
    assert second not in line
    assert "bad key data near '***'" in line


def test_public_parts_stay_readable(values: list[str]) -> None:
    line = _logged(
        values, "POST https://hooks.example.com failed; -----BEGIN OPENSSH PRIVATE KEY-----"
    )
    assert "https://hooks.example.com" in line
    assert "-----BEGIN OPENSSH PRIVATE KEY-----" in line
    assert "not-named-by-the-config-value" not in values


def test_an_exception_traceback_is_masked(values: list[str]) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(values))
    logger = logging.getLogger("test.log_secrets.exc")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise ConnectionError(f"cannot connect as waveline:{DB_PASSWORD}")
    except ConnectionError:
        logger.exception("connect failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert DB_PASSWORD not in stream.getvalue()
    assert "connect failed" in stream.getvalue()


def test_any_env_var_the_config_names_is_collected() -> None:
    class AppKey(BaseModel):
        private_key_env: str = "GITHUB_APP_KEY"

    class Future(BaseModel):
        apps: dict[str, AppKey] = {"main": AppKey()}
        tokens: list[dict[str, str]] = []

    assert named_env_vars(Future()) == {"GITHUB_APP_KEY"}
    assert {"GIT_TOKEN_ENV", "SSH_KEY_ENV", "FORGE_TOKEN_ENV", "HOOK_SECRET_ENV"} <= (
        named_env_vars(_config())
    )
    pieces = secret_pieces(APP_KEY)
    assert {"MIIEapp-key-line-one-secret", "line-two-of-the-app-key"} <= pieces


def test_a_url_among_plain_settings_gives_up_its_password() -> None:
    settings = Settings(kafka_bootstrap="sasl://user:plain-setting-pw@broker:9093")
    assert "plain-setting-pw" in secret_values(settings, Secrets())


def test_without_a_secret_nothing_is_masked() -> None:
    settings = Settings(database_url=SecretStr("postgresql://waveline@127.0.0.1:5432/waveline"))
    values = secret_values(settings, Secrets())
    # The URL itself is a secret setting (it may hold a password); nothing shorter is cut.
    assert values == ["postgresql://waveline@127.0.0.1:5432/waveline"]
