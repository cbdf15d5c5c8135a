"""Every Kafka client kairos makes, built here from the settings.

The producers, consumers and admin clients of the agents, the commands
and the bench come from :func:`producer`, :func:`consumer` and
:func:`admin`, and Faust's own clients get the same connection through
:func:`broker_credentials`, so a cluster that asks for TLS or SASL
(``KAIROS_KAFKA_*``, checked at start-up by streams/security.py) is spoken
to the same way by all of them. Each call site keeps its own options
(group, isolation level, acks); only the connection comes from here.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from streams.settings import env_name

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

    from streams.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of the connection, or None in plaintext. Certificates
    are always verified (the system's CAs, or KAIROS_KAFKA_CA_FILE's)."""
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ca_file)
    context.check_hostname = settings.kafka_check_hostname
    if settings.kafka_cert_file is not None:
        context.load_cert_chain(settings.kafka_cert_file, settings.kafka_key_file)
    return context


def connection(settings: Settings) -> dict[str, Any]:
    """The options every aiokafka client takes for the bootstrap servers and security."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "ssl_context": ssl_context(settings),
    }
    if settings.kafka_sasl_mechanism is not None:
        username, password = settings.kafka_sasl_username, settings.kafka_sasl_password
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = username.get_secret_value() if username else None
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**connection(settings), **options)


def consumer(settings: Settings, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **connection(settings), **options)


def admin(settings: Settings, **options: Any) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection(settings), **options)


class Clients:
    """The client factory of one worker, bound to its settings: the
    :class:`agents.runtime.Runtime` holds one, and each stage builds the
    clients it opens on start and closes on stop from it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def producer(self, **options: Any) -> AIOKafkaProducer:
        return producer(self.settings, **options)

    def consumer(self, *topics: str, **options: Any) -> AIOKafkaConsumer:
        return consumer(self.settings, *topics, **options)

    def admin(self, **options: Any) -> AIOKafkaAdminClient:
        return admin(self.settings, **options)


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """The same connection for the Faust app's own consumers and producers
    (``broker_credentials``): None in plaintext, as Faust's default."""
    from faust.auth import SASLCredentials, SSLCredentials

    options = connection(settings)
    context = options["ssl_context"]
    if "sasl_mechanism" in options:
        return SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=context,
        )
    return SSLCredentials(context) if context is not None else None


SASL_FAILURES = (SaslAuthenticationFailed, UnsupportedSaslMechanismError, IllegalSaslStateError)


async def refusal(settings: Settings, timeout_ms: int = 10_000) -> str | None:
    """Why the brokers turn this client away, if they answer at all: a
    rejected password or mechanism, a failed TLS handshake, a listener that
    hangs up unanswered (it expects TLS or a client certificate), or one that
    resets a TLS hello (it is plaintext). None if no broker answered
    (down, unreachable: worth retrying) or one accepted the connection.

    aiokafka logs these at connect and raises only "Unable to bootstrap";
    retrying cannot fix any of them, so a command stops with the reason.
    """
    options = connection(settings)
    options.pop("bootstrap_servers")
    protocol = f"{env_name(('kafka_security_protocol',))}={settings.kafka_security_protocol}"
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(host, int(port), request_timeout_ms=timeout_ms, **options)
        except SASL_FAILURES as exc:
            return f"Kafka at {server} refused the SASL login: {exc.args[0] if exc.args else exc}"
        except ssl.SSLError as exc:
            return f"the TLS handshake with Kafka at {server} failed ({protocol}): {exc}"
        except ConnectionResetError:
            # A plaintext listener reads a TLS hello as an oversized request and resets.
            if options["ssl_context"] is not None:
                return (
                    f"Kafka at {server} reset the connection during the TLS handshake "
                    f"({protocol}): is it a plaintext listener?"
                )
        except KafkaConnectionError as exc:
            if "closed" in str(exc):
                return f"Kafka at {server} closed the connection unanswered ({protocol}): " + (
                    _hang_up_hint(settings)
                )
        except (OSError, KafkaError, TimeoutError):
            continue
        else:
            conn.close()
            return None
    return None


def _hang_up_hint(settings: Settings) -> str:
    """What a listener that hangs up on this client most likely wants instead."""
    cert = env_name(("kafka_cert_file",))
    if settings.kafka_security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT"):
        return "does its listener expect TLS?"
    if settings.kafka_cert_file is None:
        return f"does its listener expect a client certificate ({cert}) or SASL?"
    return f"does its listener trust the client certificate of {cert}?"
