"""Kafka security settings: refused combinations at load, and what the one client builder
(shared/kafka_clients.py) hands aiokafka and faststream for each protocol and mechanism."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.kafka_certs import Authority, Leaf, make_authority, make_leaf
from waveline.shared import kafka_clients
from waveline.shared.config import Settings, load_settings
from waveline.shared.errors import ConfigError, KafkaAccessRefused
from waveline.shared.kafka import make_broker
from waveline.shared.outage import is_retriable

PASSWORD = "pa55-w0rd-of-alice"
KEY_PASSWORD = "key-pa55"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Leaf]:
    where = tmp_path_factory.mktemp("pki")
    ca = make_authority(where, "unit")
    return ca, make_leaf(ca, where, "client", key_password=KEY_PASSWORD)


def settings(**fields: Any) -> Settings:
    return Settings(**{"kafka_bootstrap": "127.0.0.1:9"} | fields)


def refused(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """The ConfigError message ``load_settings`` gives for these WAVELINE_KAFKA_* values."""
    for name, value in env.items():
        monkeypatch.setenv(f"WAVELINE_KAFKA_{name.upper()}", value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    return str(error.value)


def test_the_default_is_plaintext_with_nothing_else() -> None:
    args = kafka_clients.connection_args(settings())
    assert args == {"bootstrap_servers": "127.0.0.1:9", "security_protocol": "PLAINTEXT"}
    assert kafka_clients.connection_args("127.0.0.1:9092") == {
        "bootstrap_servers": "127.0.0.1:9092"
    }


def test_sasl_without_a_mechanism_is_refused_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    text = refused(monkeypatch, security_protocol="SASL_SSL")
    assert "WAVELINE_KAFKA_SASL_MECHANISM is required with security protocol SASL_SSL" in text


def test_scram_without_credentials_is_refused_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    text = refused(monkeypatch, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512")
    assert "WAVELINE_KAFKA_SASL_USERNAME is required" in text
    assert "WAVELINE_KAFKA_SASL_PASSWORD is required" in text


def test_an_empty_password_counts_as_none(monkeypatch: pytest.MonkeyPatch) -> None:
    text = refused(
        monkeypatch,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="alice",
        sasl_password="",
    )
    assert "WAVELINE_KAFKA_SASL_PASSWORD is required" in text
    assert "USERNAME" not in text


def test_credentials_the_protocol_never_sends_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = refused(monkeypatch, sasl_username="alice", sasl_password=PASSWORD)
    assert "WAVELINE_KAFKA_SASL_PASSWORD is set but security protocol PLAINTEXT never uses it" in (
        text
    )
    assert PASSWORD not in text


def test_an_unknown_protocol_or_mechanism_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "security_protocol" in refused(monkeypatch, security_protocol="TLS")
    monkeypatch.setenv("WAVELINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert "sasl_mechanism" in refused(monkeypatch, sasl_mechanism="GSSAPI")


def test_oauthbearer_takes_a_token_not_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    text = refused(
        monkeypatch,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_password=PASSWORD,
    )
    assert "WAVELINE_KAFKA_SASL_OAUTH_TOKEN is required" in text
    assert "WAVELINE_KAFKA_SASL_PASSWORD is set but" in text


def test_tls_files_must_exist_and_belong_to_a_tls_protocol(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: tuple[Authority, Leaf]
) -> None:
    missing = tmp_path / "nowhere.pem"
    text = refused(monkeypatch, security_protocol="SSL", ssl_cafile=str(missing))
    assert f"WAVELINE_KAFKA_SSL_CAFILE: {missing} is not a file" in text
    monkeypatch.delenv("WAVELINE_KAFKA_SECURITY_PROTOCOL")
    text = refused(monkeypatch, ssl_cafile=str(pki[0].cert))
    assert "WAVELINE_KAFKA_SSL_CAFILE is set but security protocol PLAINTEXT never uses it" in text
    monkeypatch.delenv("WAVELINE_KAFKA_SSL_CAFILE")
    text = refused(monkeypatch, security_protocol="SSL", ssl_keyfile=str(pki[1].key))
    assert "WAVELINE_KAFKA_SSL_KEYFILE needs WAVELINE_KAFKA_SSL_CERTFILE" in text


def test_sasl_ssl_scram_hands_aiokafka_the_credentials_and_a_verifying_context(
    pki: tuple[Authority, Leaf],
) -> None:
    s = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="alice",
        kafka_sasl_password=SecretStr(PASSWORD),
        kafka_ssl_cafile=pki[0].cert,
    )
    args = kafka_clients.connection_args(s)
    context = args.pop("ssl_context")
    assert args == {
        "bootstrap_servers": "127.0.0.1:9",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    # The configured CA is the one trusted (and no system CA besides: the file was given).
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "unit test CA"),),)]
    assert PASSWORD not in repr(s) and PASSWORD not in str(s.model_dump())


def test_hostname_verification_can_be_turned_off_but_not_verification(
    pki: tuple[Authority, Leaf],
) -> None:
    s = settings(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=pki[0].cert,
        kafka_ssl_check_hostname=False,
    )
    context = kafka_clients.ssl_context(s)
    assert context is not None
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_a_client_certificate_is_loaded_with_its_key_password(
    pki: tuple[Authority, Leaf],
) -> None:
    ca, client = pki
    base: dict[str, Any] = {
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": ca.cert,
        "kafka_ssl_certfile": client.cert,
        "kafka_ssl_keyfile": client.key,
    }
    assert kafka_clients.ssl_context(
        settings(**base, kafka_ssl_key_password=SecretStr(KEY_PASSWORD))
    )
    wrong = "not-the-key-pa55"
    with pytest.raises(ConfigError) as error:
        kafka_clients.ssl_context(settings(**base, kafka_ssl_key_password=SecretStr(wrong)))
    assert "WAVELINE_KAFKA_SSL_KEY_PASSWORD" in str(error.value)
    assert wrong not in str(error.value)


async def test_oauthbearer_hands_aiokafka_a_token_provider() -> None:
    s = settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_oauth_token=SecretStr("tok-123"),
    )
    args = kafka_clients.security_args(s)
    assert args["sasl_mechanism"] == "OAUTHBEARER"
    async with asyncio.timeout(5):
        assert await args["sasl_oauth_token_provider"].token() == "tok-123"
    assert "sasl_plain_password" not in args


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("PLAINTEXT", None),
        ("SSL", None),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
        ("SASL_SSL", "OAUTHBEARER"),
    ],
)
def test_the_services_broker_connects_as_the_other_clients_do(
    pki: tuple[Authority, Leaf], protocol: str, mechanism: str | None
) -> None:
    fields: dict[str, Any] = {"kafka_security_protocol": protocol}
    if protocol.endswith("SSL"):
        fields["kafka_ssl_cafile"] = pki[0].cert
    if mechanism == "OAUTHBEARER":
        fields |= {"kafka_sasl_mechanism": mechanism, "kafka_sasl_oauth_token": SecretStr("t")}
    elif mechanism is not None:
        fields |= {
            "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": "alice",
            "kafka_sasl_password": SecretStr(PASSWORD),
        }
    s = settings(**fields)
    wanted = kafka_clients.security_args(s)
    got: dict[str, Any] = dict(make_broker(s, client_id="unit")._connection_kwargs)
    for name in ("ssl_context", "sasl_oauth_token_provider"):
        assert (got.pop(name, None) is None) == (wanted.pop(name, None) is None), name
    got = {k: v for k, v in got.items() if k.startswith(("security", "sasl_")) and v is not None}
    # faststream always passes its Kerberos default; Waveline does not use GSSAPI.
    got.pop("sasl_kerberos_service_name", None)
    got.setdefault("security_protocol", "PLAINTEXT")  # aiokafka's default, left unsaid
    assert got == wanted


def test_a_refusal_is_a_config_error_never_an_outage() -> None:
    refusal = KafkaAccessRefused("Kafka at 127.0.0.1:9 refused SASL")
    assert isinstance(refusal, ConfigError)
    assert refusal.retriable is False
    assert is_retriable(refusal) is False
    # The bare standard-library error is met only once a service runs (start turns it into
    # a refusal): a certificate that changed under a running service is waited out, its
    # message is not dead-lettered.
    assert is_retriable(ssl.SSLCertVerificationError(1, "certificate verify failed")) is True


async def test_plaintext_is_never_diagnosed_as_refused() -> None:
    async with asyncio.timeout(5):
        assert await kafka_clients.diagnose(settings()) is None
        assert await kafka_clients.diagnose("127.0.0.1:9") is None


@pytest.mark.parametrize(
    ("trusted", "names", "why"),
    [
        ("other", ("127.0.0.1",), "unable to get local issuer certificate"),
        ("own", ("kafka.example.com",), "address mismatch"),
    ],
)
async def test_an_untrusted_broker_certificate_fails_start_at_once(
    tmp_path: Path, trusted: str, names: tuple[str, ...], why: str
) -> None:
    """A TLS listener (no Kafka behind it: the handshake is what fails) whose certificate
    comes from a CA the client does not trust, or names another host."""
    ca, other = make_authority(tmp_path, "own"), make_authority(tmp_path, "other")
    leaf = make_leaf(ca, tmp_path, "listener", hosts=names)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(leaf.cert, leaf.key)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=server_side)
    port = server.sockets[0].getsockname()[1]
    s = settings(
        kafka_bootstrap=f"127.0.0.1:{port}",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=(other if trusted == "other" else ca).cert,
    )
    client = kafka_clients.producer(s)
    try:
        with pytest.raises(KafkaAccessRefused) as refused:
            async with asyncio.timeout(10):
                await kafka_clients.start(client, s)
    finally:
        await client.stop()
        server.close()
    assert "its TLS certificate is not trusted" in str(refused.value)
    assert why in str(refused.value)
