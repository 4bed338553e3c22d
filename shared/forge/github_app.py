"""GitHub App authentication: the RS256 JWT, its exchange for an installation token, and the
token cache every GitHub caller (REST client, git over HTTPS, repository_dispatch) draws from.

This module owns the App token exchange (docs/github.md). ``AppTokens.token()`` answers the
cached installation token while it has more than a margin left (``RENEW_MARGIN_S``, at most a
quarter of its lifetime) and mints a new one otherwise; a caller whose token was refused
(401) hands it back with ``refused`` and the next call mints anew. The JWT lives for one
exchange only (issued 60 s in the past against clock drift, expiring within 9 minutes,
``iss`` the App's id), as GitHub documents.

Neither the key, the JWT nor a token ever reaches a message or a log line: they are
``SecretStr`` or local variables, and errors say what GitHub answered (status and message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from waveline.shared.config import RepoConfig, Secrets
from waveline.shared.errors import ConfigError
from waveline.shared.forge.base import ForgeError
from waveline.shared.github_config import GitHubAppConfig

logger = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
# GitHub accepts a JWT expiring at most 10 minutes after it was made; 9 leaves room for a
# clock running a little fast.
JWT_LIFETIME_S = 9 * 60
JWT_BACKDATE_S = 60
# Installation tokens live an hour: renew this long before they expire (or at three
# quarters of a shorter life).
RENEW_MARGIN_S = 5 * 60.0
_FULL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_MAX_DETAIL = 200


class TokenSource(Protocol):
    """Where a GitHub caller gets the token of its next request."""

    async def token(self) -> SecretStr:
        """A token valid for a while yet. Raises ``ForgeError`` when none can be had."""
        ...

    def refused(self, token: SecretStr) -> None:
        """GitHub answered 401 to ``token``: do not hand it out again."""
        ...

    async def close(self) -> None:
        """Release connections. Safe to call more than once."""
        ...


@dataclass(frozen=True)
class StaticToken:
    """A fixed token (a personal or fine-grained access token): nothing to renew."""

    value: SecretStr

    async def token(self) -> SecretStr:
        return self.value

    def refused(self, token: SecretStr) -> None:
        del token  # nothing else to offer: the caller's 401 stands

    async def close(self) -> None:
        return None


class GitHubAppError(ForgeError):
    """GitHub refused the App's credentials or has no installation for the repository."""

    code = "github_app_auth"


def load_private_key(pem: SecretStr | None, where: str) -> rsa.RSAPrivateKey:
    """The App's RSA private key from its PEM text. ``where`` names the setting (the
    environment variable) for the ``ConfigError`` raised when it is missing or unusable;
    the message never quotes the value."""
    if pem is None or not pem.get_secret_value().strip():
        raise ConfigError(f"{where}: the GitHub App's private key is not set")
    text = pem.get_secret_value().strip().replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"{where}: not a usable PEM private key (give the .pem file GitHub generated for"
            " the App, unencrypted)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}: a GitHub App's private key is an RSA key")
    return key


def app_jwt(app_id: str, key: rsa.RSAPrivateKey, now: float) -> str:
    """The JWT that authenticates as the App itself (RS256, ``iat`` backdated 60 s)."""
    issued = int(now) - JWT_BACKDATE_S
    claims = {"iat": issued, "exp": int(now) + JWT_LIFETIME_S, "iss": app_id}
    return jwt.encode(claims, key, algorithm="RS256")


def renew_in(lifetime_s: float, margin_s: float = RENEW_MARGIN_S) -> float:
    """How long after it was issued a token of ``lifetime_s`` is renewed: ``margin_s``
    before it expires, or at three quarters of its life when that is earlier."""
    return max(0.0, lifetime_s - min(margin_s, lifetime_s / 4))


class AppTokens:
    """Installation tokens of one App installation, minted on demand and cached.

    ``installation_id`` unset: looked up once from ``repository`` (``owner/name``).
    ``exchanges`` counts the tokens minted (for tests and metrics).
    """

    def __init__(
        self,
        app_id: str,
        private_key: rsa.RSAPrivateKey,
        *,
        api_url: str = "https://api.github.com",
        installation_id: int | None = None,
        repository: str | None = None,
        margin_s: float = RENEW_MARGIN_S,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if installation_id is None and (repository is None or not _FULL_NAME.fullmatch(repository)):
            raise ConfigError(
                f"GitHub App {app_id}: without installation_id, a repository (owner/name) to"
                f" look the installation up from is needed, got {repository!r}"
            )
        self.app_id = app_id
        self._key = private_key
        self._api_url = api_url.rstrip("/")
        self.installation_id = installation_id
        self._repository = repository
        self._margin_s = margin_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._token: SecretStr | None = None
        self._renew_at = 0.0
        self._expires_at = 0.0
        self.exchanges = 0

    def __repr__(self) -> str:
        return f"AppTokens(app_id={self.app_id!r}, installation_id={self.installation_id!r})"

    async def token(self) -> SecretStr:
        """The cached installation token, or a new one when it is due for renewal. When
        GitHub cannot mint one right now (no answer, 5xx, rate limit), the cached token is
        answered while it has not expired yet; else the ``ForgeError`` is raised."""
        cached = self._token
        if cached is not None and self._clock() < self._renew_at:
            return cached
        async with self._lock:
            if self._token is not None and self._clock() < self._renew_at:
                return self._token
            try:
                if self.installation_id is None:
                    self.installation_id = await self._lookup_installation()
                value, lifetime = await self._exchange(self.installation_id)
            except ForgeError as exc:
                if exc.retriable and self._token is not None and self._clock() < self._expires_at:
                    logger.warning(
                        "GitHub App %s: renewing its token failed (%s); the current one has"
                        " %.0f s left",
                        self.app_id,
                        exc,
                        self._expires_at - self._clock(),
                    )
                    return self._token
                raise
            now = self._clock()
            self._token, self._renew_at = value, now + renew_in(lifetime, self._margin_s)
            self._expires_at = now + lifetime
            self.exchanges += 1
            logger.info(
                "GitHub App %s: installation %d token minted, renewed in %.0f s",
                self.app_id,
                self.installation_id,
                self._renew_at - self._clock(),
            )
            return value

    def refused(self, token: SecretStr) -> None:
        if self._token is not None and token.get_secret_value() == self._token.get_secret_value():
            logger.warning(
                "GitHub App %s: GitHub refused the installation token; minting another",
                self.app_id,
            )
            self._token, self._renew_at, self._expires_at = None, 0.0, 0.0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- GitHub ----------------------------------------------------------------------------

    async def _lookup_installation(self) -> int:
        assert self._repository is not None
        owner, name = self._repository.split("/", 1)
        path = f"repos/{quote(owner)}/{quote(name)}/installation"
        status, doc, _ = await self._send("GET", path)
        if status == 404:
            raise GitHubAppError(
                f"GitHub App {self.app_id} is not installed on {self._repository} (GET /{path}"
                " -> 404): install it on the repository, or set installation_id",
                status=404,
            )
        if status != 200:
            raise self._failure("GET", path, status, doc)
        found = doc.get("id") if isinstance(doc, dict) else None
        if not isinstance(found, int) or isinstance(found, bool):
            raise GitHubAppError(f"GitHub answered GET /{path} without an id", retriable=False)
        logger.info(
            "GitHub App %s: installation %d serves %s", self.app_id, found, self._repository
        )
        return found

    async def _exchange(self, installation_id: int) -> tuple[SecretStr, float]:
        """A new installation token and its lifetime in seconds."""
        path = f"app/installations/{int(installation_id)}/access_tokens"
        status, doc, answered_at = await self._send("POST", path)
        if status != 201:
            raise self._failure("POST", path, status, doc)
        value = doc.get("token") if isinstance(doc, dict) else None
        expires = doc.get("expires_at") if isinstance(doc, dict) else None
        if not isinstance(value, str) or not value or not isinstance(expires, str):
            raise GitHubAppError(
                f"GitHub answered POST /{path} without token and expires_at", retriable=False
            )
        try:
            expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        except ValueError:
            raise GitHubAppError(
                f"GitHub answered POST /{path} with an unreadable expires_at", retriable=False
            ) from None
        # Measured against GitHub's own clock (its Date header) when it sent one, so a
        # local clock that is off does not shorten or stretch the token's life; less the
        # second both stamps may have been rounded down by.
        return SecretStr(value), max(0.0, expires_at.timestamp() - answered_at - 1.0)

    async def _send(self, method: str, path: str) -> tuple[int, Any, float]:
        """(status, JSON or None, GitHub's time of the answer as a Unix timestamp)."""
        headers = {
            "Authorization": f"Bearer {app_jwt(self.app_id, self._key, time.time())}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "waveline",
        }
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(
                method, f"{self._api_url}/{path}", headers=headers
            ) as resp:
                try:
                    doc: Any = await resp.json(content_type=None)
                except ValueError:
                    doc = None
                answered_at = time.time()
                date = resp.headers.get("Date")
                if date:
                    with contextlib.suppress(TypeError, ValueError):
                        answered_at = parsedate_to_datetime(date).timestamp()
                rate_limited = resp.status in (403, 429) and (
                    resp.headers.get("X-RateLimit-Remaining") == "0"
                    or "Retry-After" in resp.headers
                )
                if rate_limited:
                    raise GitHubAppError(
                        f"GitHub {method} /{path} rate limited ({resp.status})",
                        status=resp.status,
                        retriable=True,
                    )
                return resp.status, doc, answered_at
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GitHubAppError(
                f"GitHub {method} /{path} got no answer: {type(exc).__name__}"
            ) from None

    def _failure(self, method: str, path: str, status: int, doc: Any) -> GitHubAppError:
        message = doc.get("message") if isinstance(doc, dict) else None
        said = f": {str(message)[:_MAX_DETAIL]}" if message else ""
        what = f"GitHub {method} /{path} -> {status}{said}"
        if status == 401:
            return GitHubAppError(
                f"GitHub refused GitHub App {self.app_id}'s JWT ({what}): the private key is"
                " not this App's, app_id is wrong, or this machine's clock is off",
                status=401,
                retriable=False,
            )
        if status in (403, 404):
            return GitHubAppError(
                f"GitHub App {self.app_id}: no usable installation {self.installation_id}"
                f" ({what}): is the App installed (not suspended) on the repository?",
                status=status,
                retriable=False,
            )
        return GitHubAppError(what, status=status)


def app_tokens(
    app: GitHubAppConfig,
    *,
    api_url: str,
    repository: str | None,
    secrets: Secrets,
    where: str,
    margin_s: float = RENEW_MARGIN_S,
) -> AppTokens:
    """``AppTokens`` for ``app`` with its key from ``secrets``; ``ConfigError`` (naming
    ``where`` and the variable, never the value) when the key is missing or unusable."""
    key = load_private_key(secrets.get(app.private_key_env), f"{where}.app ({app.private_key_env})")
    return AppTokens(
        app.app_id,
        key,
        api_url=api_url,
        installation_id=app.installation_id,
        repository=repository,
        margin_s=margin_s,
    )


def token_source(
    name: str, repo: RepoConfig, secrets: Secrets, *, repository: str | None = None
) -> TokenSource:
    """How ``repos.<name>``'s forge authenticates: its App, else its ``token_env``.
    ``repository`` is the one the App must be installed on (default: the repo itself).
    Raises ``ConfigError`` when the forge is missing or its credential is not set."""
    forge = repo.forge
    if forge is None:
        raise ConfigError(f"repos.{name}: no forge is configured")
    where = f"repos.{name}.forge"
    if forge.app is not None:
        return app_tokens(
            forge.app,
            api_url=forge.api_url,
            repository=repository or repo.full_name(),
            secrets=secrets,
            where=where,
        )
    token = secrets.get(forge.token_env)
    if token is None:
        raise ConfigError(f"{where}: {forge.token_env} is not set")
    return StaticToken(token)
