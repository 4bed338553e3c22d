"""Throwaway certificate authorities and certificates for the TLS tests, made with the
openssl command line (EC P-256 keys: quick to make; PKCS#8 PEM, as Kafka's PEM keystore
wants them)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Authority:
    """A CA: ``cert`` is what a client trusts (``WAVELINE_KAFKA_SSL_CAFILE``)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Leaf:
    """A certificate signed by an ``Authority``; ``keystore`` is the key followed by the
    certificate and its CA, in one PEM file (Kafka's ``ssl.keystore.type=PEM``)."""

    cert: Path
    key: Path
    keystore: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def make_authority(where: Path, name: str) -> Authority:
    where.mkdir(parents=True, exist_ok=True)
    cert, key = where / f"{name}-ca.pem", where / f"{name}-ca.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name} test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return Authority(cert, key)


def make_leaf(
    ca: Authority,
    where: Path,
    name: str,
    *,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    key_password: str | None = None,
) -> Leaf:
    """A server and client certificate for ``hosts`` (IP addresses or DNS names), its key
    encrypted with ``key_password`` when one is given."""
    where.mkdir(parents=True, exist_ok=True)
    cert, key, csr = where / f"{name}.pem", where / f"{name}.key", where / f"{name}.csr"
    plain_key = where / f"{name}.plain.key"
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", plain_key
    )
    _openssl("req", "-new", "-key", plain_key, "-out", csr, "-subj", f"/CN={hosts[0]}")
    names = ",".join(
        f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts
    )
    extensions = where / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName={names}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectKeyIdentifier=hash\n"
    )
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", extensions,
    )  # fmt: skip
    if key_password is None:
        plain_key.rename(key)
    else:
        _openssl(
            "pkcs8", "-topk8", "-in", plain_key, "-out", key,
            "-v2", "aes-256-cbc", "-passout", f"pass:{key_password}",
        )  # fmt: skip
        plain_key.unlink()
    keystore = where / f"{name}.keystore.pem"
    keystore.write_text(key.read_text() + cert.read_text() + ca.cert.read_text())
    return Leaf(cert, key, keystore)
