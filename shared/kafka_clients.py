"""Every Kafka client Waveline creates is built here, from the settings: where the brokers
are and how to authenticate to them (security protocol, SASL mechanism and credentials, TLS
CA, client certificate, hostname verification; docs/security.md, Kafka: TLS and SASL).
No other module passes ``bootstrap_servers`` or security arguments to aiokafka or faststream.

A client Kafka refuses (wrong SASL credentials, a broker certificate the CA does not trust)
fails to start with ``KafkaAccessRefused``, which is permanent: aiokafka itself only says
``Unable to bootstrap``, a retriable error, whatever the cause; ``start`` asks the brokers
once more, directly, to tell a refusal from an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from faststream.kafka import KafkaBroker
from faststream.security import (
    BaseSecurity,
    SASLOAuthBearer,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic import SecretStr

from waveline.shared.config import Settings
from waveline.shared.errors import ConfigError, KafkaAccessRefused

logger = logging.getLogger(__name__)

# Where to find Kafka: the settings, or a bare bootstrap address of a PLAINTEXT listener
# (what tests and tools on the local stack pass).
KafkaTarget = Settings | str

# The broker's answers that mean "not with these credentials".
SASL_REFUSALS: tuple[type[BaseException], ...] = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
)

# How long ``start`` spends asking the brokers why a client could not bootstrap.
DIAGNOSE_TIMEOUT_S = 10.0


class _StaticToken(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka is untyped
    """An OAUTHBEARER token from the environment (WAVELINE_KAFKA_SASL_OAUTH_TOKEN); a token
    that expires needs the process restarted with a new one."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token.get_secret_value()


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the SSL and SASL_SSL protocols (None for the others): the brokers'
    certificates verified against ``kafka_ssl_cafile`` (the system's CAs when unset), the
    client certificate presented when one is set. ``ConfigError`` when a file cannot be
    loaded (it names the setting, never the key password)."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    cafile, certfile = settings.kafka_ssl_cafile, settings.kafka_ssl_certfile
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    except OSError as exc:  # ssl.SSLError is an OSError
        raise ConfigError(f"WAVELINE_KAFKA_SSL_CAFILE {cafile} cannot be loaded: {exc}") from exc
    if certfile is not None:
        password = settings.kafka_ssl_key_password
        keyfile = settings.kafka_ssl_keyfile
        try:
            context.load_cert_chain(
                certfile,
                keyfile,
                password=password.get_secret_value() if password is not None else None,
            )
        except OSError as exc:
            raise ConfigError(
                f"the Kafka client certificate {certfile} (key {keyfile or 'in the same file'}) "
                f"cannot be loaded (WAVELINE_KAFKA_SSL_CERTFILE, WAVELINE_KAFKA_SSL_KEYFILE, "
                f"WAVELINE_KAFKA_SSL_KEY_PASSWORD): {exc}"
            ) from exc
    # Verification stays required either way; this only skips matching the broker's name.
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def security_args(kafka: KafkaTarget) -> dict[str, Any]:
    """aiokafka's security keyword arguments for ``kafka`` (empty for a bare address)."""
    if isinstance(kafka, str):
        return {}
    protocol = kafka.kafka_security_protocol
    args: dict[str, Any] = {"security_protocol": protocol}
    context = ssl_context(kafka)
    if context is not None:
        args["ssl_context"] = context
    if protocol.startswith("SASL_"):
        mechanism = kafka.kafka_sasl_mechanism
        args["sasl_mechanism"] = mechanism
        if mechanism == "OAUTHBEARER":
            assert kafka.kafka_sasl_oauth_token is not None  # Settings validated it
            args["sasl_oauth_token_provider"] = _StaticToken(kafka.kafka_sasl_oauth_token)
        else:
            assert kafka.kafka_sasl_password is not None  # Settings validated it
            args["sasl_plain_username"] = kafka.kafka_sasl_username
            args["sasl_plain_password"] = kafka.kafka_sasl_password.get_secret_value()
    return args


def bootstrap_of(kafka: KafkaTarget) -> str:
    return kafka if isinstance(kafka, str) else kafka.kafka_bootstrap


def connection_args(kafka: KafkaTarget) -> dict[str, Any]:
    """``bootstrap_servers`` and the security arguments: what every aiokafka client takes."""
    return {"bootstrap_servers": bootstrap_of(kafka), **security_args(kafka)}


def producer(kafka: KafkaTarget, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer; ``options`` are aiokafka's other arguments (acks, ...)."""
    return AIOKafkaProducer(**connection_args(kafka), **options)


def consumer(kafka: KafkaTarget, *topics: str, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer of ``topics`` (none: assign partitions yourself)."""
    return AIOKafkaConsumer(*topics, **connection_args(kafka), **options)


def admin(kafka: KafkaTarget, **options: Any) -> AIOKafkaAdminClient:
    """An aiokafka admin client."""
    return AIOKafkaAdminClient(**connection_args(kafka), **options)


def _faststream_security(settings: Settings) -> BaseSecurity | None:
    """The same settings as faststream's security object (which it turns back into exactly
    ``security_args``; a unit test holds the two together)."""
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings)
    if not protocol.startswith("SASL_"):
        return BaseSecurity(ssl_context=context) if context is not None else None
    tls = context is not None
    mechanism = settings.kafka_sasl_mechanism
    if mechanism == "OAUTHBEARER":
        return SASLOAuthBearer(ssl_context=context, use_ssl=tls)
    username = settings.kafka_sasl_username or ""
    password = (
        settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    )
    kinds: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }
    return kinds[str(mechanism)](username, password, ssl_context=context, use_ssl=tls)


class _Broker(KafkaBroker):
    """faststream's broker whose ``start`` says when Kafka refused it (see ``start``)."""

    def __init__(self, settings: Settings, **options: Any) -> None:
        self._settings = settings
        token = settings.kafka_sasl_oauth_token
        if settings.kafka_sasl_mechanism == "OAUTHBEARER" and token is not None:
            options["sasl_oauth_token_provider"] = _StaticToken(token)
        super().__init__(
            settings.kafka_bootstrap, security=_faststream_security(settings), **options
        )

    async def start(self) -> None:
        try:
            await super().start()
        except KafkaConnectionError as exc:
            await _raise_refusal(self._settings, exc)
            raise


def broker(settings: Settings, **options: Any) -> KafkaBroker:
    """faststream's broker (the services' publisher and subscribers); ``options`` are
    faststream's other arguments. Its ``start`` raises ``KafkaAccessRefused`` as ``start``
    below does."""
    return _Broker(settings, **options)


class _Startable(Protocol):
    async def start(self) -> None: ...


async def start(client: _Startable, kafka: KafkaTarget) -> None:
    """Start an aiokafka client built here. ``KafkaAccessRefused`` (permanent) when Kafka
    refused its credentials or certificate; aiokafka's errors otherwise (a broker that does
    not answer stays ``KafkaConnectionError``, retriable). A client that did not start is
    closed (aiokafka leaves its connections to the garbage collector otherwise)."""
    try:
        try:
            await client.start()
        except KafkaConnectionError as exc:
            await _raise_refusal(kafka, exc)
            raise
    except BaseException:
        # Producers and consumers stop, the admin client closes; both are idempotent.
        close = getattr(client, "stop", None) or getattr(client, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        raise


async def _raise_refusal(kafka: KafkaTarget, exc: BaseException) -> None:
    refusal = await diagnose(kafka)
    if refusal is not None:
        raise refusal from exc


async def diagnose(
    kafka: KafkaTarget, timeout_s: float = DIAGNOSE_TIMEOUT_S
) -> KafkaAccessRefused | None:
    """Connect to each bootstrap broker once, as a client would, and return why Kafka
    refuses this client (SASL credentials, TLS certificate), or None when no broker refused
    it (it accepted, or did not answer: an outage, not a refusal)."""
    if isinstance(kafka, str) or kafka.kafka_security_protocol == "PLAINTEXT":
        return None
    args = security_args(kafka)
    try:
        async with asyncio.timeout(timeout_s):
            for host, port, _ in collect_hosts(kafka.kafka_bootstrap):
                refusal = await _refusal_of(kafka, host, port, args)
                if refusal is not None:
                    return refusal
    except TimeoutError:
        pass
    return None


async def _refusal_of(
    settings: Settings, host: str, port: int, args: dict[str, Any]
) -> KafkaAccessRefused | None:
    where = f"Kafka at {host}:{port} ({settings.kafka_security_protocol})"
    try:
        conn = await create_conn(host, port, request_timeout_ms=5000, **args)
    except SASL_REFUSALS as exc:
        return KafkaAccessRefused(
            f"{where} refused SASL {settings.kafka_sasl_mechanism} authentication as "
            f"{settings.kafka_sasl_username or '(token)'}: {_text(exc)}; check "
            "WAVELINE_KAFKA_SASL_MECHANISM, WAVELINE_KAFKA_SASL_USERNAME and its password "
            "(not retriable: the same settings are refused again)"
        )
    except ssl.SSLCertVerificationError as exc:
        return KafkaAccessRefused(
            f"{where}: its TLS certificate is not trusted: {exc.verify_message}; checked "
            f"against {settings.kafka_ssl_cafile or 'the system CAs'} "
            "(WAVELINE_KAFKA_SSL_CAFILE), hostname verification "
            f"{'on' if settings.kafka_ssl_check_hostname else 'off'} "
            "(not retriable: the same certificate is refused again)"
        )
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return None  # the connection closed mid-handshake: says nothing about trust
    except ssl.SSLError as exc:
        return KafkaAccessRefused(
            f"{where}: the TLS handshake failed: {exc.reason or exc}; is the listener TLS, "
            "and does it want a client certificate (WAVELINE_KAFKA_SSL_CERTFILE)? "
            "(not retriable)"
        )
    except (OSError, KafkaError, TimeoutError):
        return None
    conn.close()
    return None


def _text(exc: BaseException) -> str:
    text, name = str(exc).strip(), type(exc).__name__
    # aiokafka's broker errors already read "[Error 58] SaslAuthenticationFailed: ...".
    return text if name in text else f"{name}: {text}" if text else name
