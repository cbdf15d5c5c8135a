"""Kafka connection settings: bad combinations stop start-up naming the
settings, and the one client factory applies good ones to every client."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import AuthProtocol

from streams import clients
from streams.settings import Settings, SettingsError, load_settings, settings_env
from streams.tools.broker import Listener, server_properties
from tests.support.secure import make_tls
from tests.support.stack import REPO

SASL = {
    "KAIROS_BROKER_URL": "kafka:9093",
    "KAIROS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAIROS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAIROS_KAFKA_SASL_USERNAME": "kairos",
    "KAIROS_KAFKA_SASL_PASSWORD": "pw-in-the-settings",
}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_tls(tmp_path_factory.mktemp("tls"))


def settings_from(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> Settings:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return load_settings()


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {**SASL, "KAIROS_KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAIROS_KAFKA_SASL_MECHANISM: Input should be 'PLAIN', 'SCRAM-SHA-256' or "
            "'SCRAM-SHA-512'",
        ),
        (
            {k: v for k, v in SASL.items() if k != "KAIROS_KAFKA_SASL_PASSWORD"},
            "KAIROS_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAIROS_KAFKA_SASL_PASSWORD",
        ),
        (
            {**SASL, "KAIROS_KAFKA_SECURITY_PROTOCOL": "SSL"},
            "KAIROS_KAFKA_SASL_MECHANISM, KAIROS_KAFKA_SASL_USERNAME, "
            "KAIROS_KAFKA_SASL_PASSWORD set, but KAIROS_KAFKA_SECURITY_PROTOCOL=SSL "
            "does not use SASL",
        ),
        (
            {"KAIROS_BROKER_URL": "kafka:9093", "KAIROS_KAFKA_CHECK_HOSTNAME": "false"},
            "KAIROS_KAFKA_CHECK_HOSTNAME set, but KAIROS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT "
            "does not use TLS",
        ),
        (
            {"KAIROS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAIROS_KAFKA_SASL_MECHANISM":
             "PLAIN", "KAIROS_KAFKA_SASL_USERNAME": "u", "KAIROS_KAFKA_SASL_PASSWORD": "p"},
            "KAIROS_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs KAIROS_BROKER_URL: "
            "the embedded broker listens in plaintext",
        ),
        (
            {"KAIROS_BROKER_URL": "kafka:9093", "KAIROS_KAFKA_SECURITY_PROTOCOL": "SSL",
             "KAIROS_KAFKA_CA_FILE": "/nonexistent/ca.pem"},
            "KAIROS_KAFKA_CA_FILE='/nonexistent/ca.pem': no such file",
        ),
        (
            {"KAIROS_LLM_CA_FILE": "/etc/hostname", "KAIROS_LLM_URL": "http://vllm:8000/v1"},
            "KAIROS_LLM_CA_FILE set, but KAIROS_LLM_URL=http://vllm:8000/v1 is not an https URL",
        ),
        ({"KAIROS_API_TOKEN": "change-me"}, "KAIROS_API_TOKEN: is a placeholder from an example"),
        ({"KAIROS_API_TOKEN": " CHANGEME "}, "KAIROS_API_TOKEN: is a placeholder from an example"),
    ],
    ids=["mechanism", "no-password", "sasl-on-ssl", "hostname-on-plaintext", "embedded",
         "ca-missing", "llm-ca-on-http", "change-me", "changeme"],
)  # fmt: skip
def test_a_bad_combination_names_the_settings(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from(monkeypatch, variables)
    assert message in str(caught.value)


def test_a_client_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch, tls: Any) -> None:
    variables = {"KAIROS_BROKER_URL": "kafka:9093", "KAIROS_KAFKA_SECURITY_PROTOCOL": "SSL",
                 "KAIROS_KAFKA_CERT_FILE": str(tls.cert)}  # fmt: skip
    with pytest.raises(SettingsError, match="KAIROS_KAFKA_CERT_FILE and KAIROS_KAFKA_KEY_FILE go"):
        settings_from(monkeypatch, variables)


def test_an_invalid_secret_is_named_but_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from(monkeypatch, {"KAIROS_API_TOKEN": "change-me"})
    assert "change-me" not in str(caught.value)


def test_sasl_ssl_reaches_every_aiokafka_client(monkeypatch: pytest.MonkeyPatch, tls: Any) -> None:
    settings = settings_from(monkeypatch, {**SASL, "KAIROS_KAFKA_CA_FILE": str(tls.ca)})
    options = clients.connection(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == (
        "SCRAM-SHA-512",
        "kairos",
    )
    assert options["sasl_plain_password"] == "pw-in-the-settings"
    context = options["ssl_context"]
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    for client in asyncio.run(made_by_the_factory(settings)):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_password == "pw-in-the-settings"
        assert client._ssl_context is not None
        assert [host[:2] for host in client.hosts] == [("kafka", 9093)]


async def made_by_the_factory(settings: Settings) -> list[Any]:
    """The underlying clients of a producer, a consumer and an admin client
    (aiokafka builds them inside an event loop; none is started)."""
    return [
        clients.producer(settings, acks="all").client,
        clients.consumer(settings, "t", group_id=None)._client,
        clients.admin(settings)._client,
    ]


def test_faust_gets_the_same_credentials(monkeypatch: pytest.MonkeyPatch, tls: Any) -> None:
    settings = settings_from(monkeypatch, {**SASL, "KAIROS_KAFKA_CA_FILE": str(tls.ca)})
    credentials = clients.broker_credentials(settings)
    assert isinstance(credentials, SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert (credentials.username, credentials.password) == ("kairos", "pw-in-the-settings")
    assert "pw-in-the-settings" not in repr(credentials)


def test_mutual_tls_loads_the_client_certificate(monkeypatch: pytest.MonkeyPatch, tls: Any) -> None:
    settings = settings_from(monkeypatch, {
        "KAIROS_BROKER_URL": "kafka:9093", "KAIROS_KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAIROS_KAFKA_CA_FILE": str(tls.ca), "KAIROS_KAFKA_CERT_FILE": str(tls.cert),
        "KAIROS_KAFKA_KEY_FILE": str(tls.key), "KAIROS_KAFKA_CHECK_HOSTNAME": "false",
    })  # fmt: skip
    credentials = clients.broker_credentials(settings)
    assert isinstance(credentials, SSLCredentials)
    assert credentials.context.check_hostname is False
    assert credentials.context.verify_mode == ssl.CERT_REQUIRED  # still verified against the CA
    assert "sasl_mechanism" not in clients.connection(settings)


def test_plaintext_stays_faust_s_default() -> None:
    settings = Settings()
    assert clients.broker_credentials(settings) is None
    assert clients.connection(settings) == {
        "bootstrap_servers": "127.0.0.1:19092", "security_protocol": "PLAINTEXT",
        "ssl_context": None,
    }  # fmt: skip


def test_a_subprocess_gets_the_kafka_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, SASL)
    env = settings_env(settings)
    assert env["KAIROS_KAFKA_SASL_PASSWORD"] == "pw-in-the-settings"
    assert env["KAIROS_KAFKA_SASL_USERNAME"] == "kairos"


# The constructors the factory wraps; no other module may call them.
CONSTRUCTOR = re.compile(r"\bAIOKafka(?:Producer|Consumer|AdminClient)\(")


def test_every_kafka_client_comes_from_the_factory() -> None:
    sources = [p for d in ("agents", "streams", "bench", "tests/support", "models")
               for p in (REPO / d).rglob("*.py")]  # fmt: skip
    assert len(sources) > 40
    built = [str(p.relative_to(REPO)) for p in sources if CONSTRUCTOR.search(p.read_text())]
    assert built == ["streams/clients.py"]


def test_an_extra_listener_joins_the_plaintext_one(tmp_path: Path) -> None:
    extra = Listener("SECURE", 9094, "SASL_SSL", {"sasl.enabled.mechanisms": "SCRAM-SHA-512"})
    props = server_properties(9092, 9093, tmp_path, [extra])
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SECURE://127.0.0.1:9094"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,SECURE://127.0.0.1:9094"
    assert props["listener.security.protocol.map"].endswith(",SECURE:SASL_SSL")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert server_properties(9092, 9093, tmp_path)["listeners"].count("://") == 2
