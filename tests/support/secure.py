"""Throwaway TLS material and a SASL_SSL listener for the embedded Kafka.

A CA made for one test session signs a certificate for 127.0.0.1 and
localhost (openssl, which every machine here has); the broker reads the
certificate and key as PEM. The SCRAM-SHA-512 user is written into the
metadata log by ``StorageTool format --add-scram``, as an operator of a
KRaft cluster bootstraps one.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from streams.tools.broker import Listener

MECHANISM = "SCRAM-SHA-512"
LISTENER = "SECURE"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


@dataclass(frozen=True)
class Tls:
    """A CA and what it signed, as PEM files."""

    ca: Path
    ca_key: Path
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("generating test certificates needs openssl on PATH")
    done = subprocess.run([openssl, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr}")


def make_ca(folder: Path, name: str = "kairos test CA") -> tuple[Path, Path]:
    """A self-signed CA, valid for a day: (certificate, key)."""
    ca, key = folder / "ca.pem", folder / "ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(ca),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return ca, key


def make_tls(folder: Path, names: str = "IP:127.0.0.1,DNS:localhost") -> Tls:
    """A CA and a server certificate it signed for ``names`` (subjectAltName)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca(folder)
    cert, key = sign(ca, ca_key, folder / "server", "localhost",
                     f"subjectAltName={names}\nextendedKeyUsage=serverAuth\n")  # fmt: skip
    return Tls(ca, ca_key, cert, key)


def client_certificate(tls: Tls, folder: Path, name: str = "kairos") -> tuple[Path, Path]:
    """A client certificate for mutual TLS, signed by ``tls``'s CA: (certificate, key)."""
    return sign(tls.ca, tls.ca_key, folder / "client", name, "extendedKeyUsage=clientAuth\n")


def sign(ca: Path, ca_key: Path, stem: Path, name: str, extensions: str) -> tuple[Path, Path]:
    """A new key and a certificate for ``name`` that ``ca`` signed: (certificate, key)."""
    key, csr, cert, ext = (stem.with_suffix(s) for s in (".key", ".csr", ".pem", ".ext"))
    ext.write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return cert, key


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str


def new_user() -> ScramUser:
    """A user with a password no test would write by chance, so a leak is found."""
    return ScramUser("kairos-app", "sasl-pw-" + uuid.uuid4().hex)


def keystore(tls: Tls, folder: Path) -> Path:
    """Kafka's PEM keystore: the server's key, then its certificate."""
    path = folder / "keystore.pem"
    path.write_text(tls.key.read_text() + tls.cert.read_text())
    return path


def sasl_ssl_listener(port: int, tls: Tls, user: ScramUser, folder: Path) -> Listener:
    """A SASL_SSL listener on ``port``: SCRAM-SHA-512 for ``user``, ``tls``'s certificate."""
    prefix = f"listener.name.{LISTENER.lower()}."
    return Listener(
        LISTENER,
        port,
        "SASL_SSL",
        {
            prefix + "sasl.enabled.mechanisms": MECHANISM,
            prefix + MECHANISM.lower() + ".sasl.jaas.config": SCRAM_LOGIN,
            prefix + "ssl.keystore.type": "PEM",
            prefix + "ssl.keystore.location": str(keystore(tls, folder)),
        },
        ("--add-scram", f"{MECHANISM}=[name={user.name},password={user.password}]"),
    )


def sasl_plaintext_listener(port: int, user: ScramUser) -> Listener:
    """A SASL_PLAINTEXT listener on ``port`` for ``user``, by PLAIN (the user in
    the broker's JAAS config) or SCRAM-SHA-256 (created at format)."""
    prefix = "listener.name.saslplain."
    plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
             f'user_{user.name}="{user.password}";')  # fmt: skip
    return Listener(
        "SASLPLAIN",
        port,
        "SASL_PLAINTEXT",
        {
            prefix + "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
            prefix + "plain.sasl.jaas.config": plain,
            prefix + "scram-sha-256.sasl.jaas.config": SCRAM_LOGIN,
        },
        ("--add-scram", f"SCRAM-SHA-256=[name={user.name},password={user.password}]"),
    )


def mutual_tls_listener(port: int, tls: Tls, folder: Path) -> Listener:
    """An SSL listener on ``port`` that requires a client certificate ``tls``'s CA signed."""
    prefix = "listener.name.mtls."
    return Listener("MTLS", port, "SSL", {
        prefix + "ssl.keystore.type": "PEM",
        prefix + "ssl.keystore.location": str(keystore(tls, folder)),
        prefix + "ssl.truststore.type": "PEM",
        prefix + "ssl.truststore.location": str(tls.ca),
        prefix + "ssl.client.auth": "required",
    })  # fmt: skip


def server_context(tls: Tls) -> ssl.SSLContext:
    """A TLS server context presenting ``tls``'s certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    return context
