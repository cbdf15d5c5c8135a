"""Every kairos command through a SASL_SSL listener (SCRAM-SHA-512), and no
secret in what they print, log, serve or dead-letter; mutual TLS.

One embedded Kafka for the module has its plaintext listener (for the
readiness probe), one SASL_SSL and one SSL that requires a client
certificate, both with a certificate from a CA made here; the SCRAM user is
created when its log dirs are formatted. Every client in these tests
connects to one of the secured listeners only.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from streams.settings import Settings, settings_env
from streams.tools.broker import start_broker
from streams.tools.process import free_port
from tests.e2e.scenario import OMAR, POISON, shopper_events
from tests.support.fake_llm import FakeLLM
from tests.support.secure import (
    MECHANISM,
    ScramUser,
    Tls,
    client_certificate,
    make_tls,
    mutual_tls_listener,
    new_user,
    sasl_plaintext_listener,
    sasl_ssl_listener,
    server_context,
)
from tests.support.stack import REPO, Worker, consume, run_cli, settings_for_test

pytestmark = pytest.mark.broker

# Each a value no test writes by chance, so finding one anywhere is a leak.
API_TOKEN = SecretStr("api-token-" + "8d41f07c2e")
COUPON_SECRET = SecretStr("coupon-secret-" + "b7e2a9")
LLM_API_KEY = SecretStr("llm-api-key-" + "3c9d5e")
STORE = {"id": "s-harbor", "name": "Harbor", "lat": 41.3, "lon": -72.9, "radius_m": 90,
         "hours": "09:00-21:00", "categories": ["outdoor"]}  # fmt: skip


@dataclass(frozen=True)
class Secured:
    address: str  # the SASL_SSL listener
    mtls_address: str  # the SSL listener that requires a client certificate
    plaintext_address: str
    sasl_plaintext_address: str  # SASL without TLS: PLAIN or SCRAM-SHA-256
    tls: Tls
    user: ScramUser


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    home = tmp_path_factory.mktemp("secured-broker")
    tls, user = make_tls(home / "tls"), new_user()
    plaintext, port, mtls_port, sasl_plaintext = (free_port() for _ in range(4))
    listeners = [
        sasl_ssl_listener(port, tls, user, home),
        mutual_tls_listener(mtls_port, tls, home),
        sasl_plaintext_listener(sasl_plaintext, user),
    ]
    process = start_broker(plaintext, home, home / "broker.log", extra=listeners)
    try:
        yield Secured(*(f"127.0.0.1:{p}" for p in (port, mtls_port, plaintext, sasl_plaintext)),
                      tls, user)  # fmt: skip
    finally:
        process.stop()


def secure(settings: Settings, secured: Secured, **overrides: Any) -> Settings:
    """``settings`` pointed at the SASL_SSL listener as ``secured``'s user."""
    connection = {
        "broker_url": secured.address,
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": MECHANISM,
        "kafka_sasl_username": SecretStr(secured.user.name),
        "kafka_sasl_password": SecretStr(secured.user.password),
        "kafka_ca_file": secured.tls.ca,
    }
    return Settings(**{**settings.model_dump(), **connection, **overrides})


def the_secrets(settings: Settings) -> list[str]:
    secrets = [settings.kafka_sasl_password, settings.api_token, settings.coupon_secret,
               settings.llm_api_key]  # fmt: skip
    return [s.get_secret_value() for s in secrets if s is not None]


@dataclass
class Run:
    """What a worker and every command printed, logged, served and dead-lettered."""

    settings: Settings
    runs: dict[str, subprocess.CompletedProcess[str]]
    worker_log: str
    metrics: str
    profile: httpx.Response
    dead_letters: list[Any]
    llm_authorizations: list[str]


@pytest.fixture(scope="module")
def run(secured: Secured, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A worker and each command through the secured listener, with every secret set
    and the LLM behind TLS."""
    folder = tmp_path_factory.mktemp("secured-run")
    with FakeLLM(tls=server_context(secured.tls)) as llm:
        settings = secure(
            settings_for_test("unused:1", llm.url, llm.model, folder), secured,
            api_token=API_TOKEN, coupon_secret=COUPON_SECRET, llm_api_key=LLM_API_KEY,
            llm_ca_file=secured.tls.ca,
        )  # fmt: skip
        runs = {"topics create": run_cli(settings, "topics", "create")}
        runs["topics list"] = run_cli(settings, "topics", "list")
        stores = folder / "stores.jsonl"
        stores.write_bytes(orjson.dumps(STORE) + b"\n")
        runs["reference load"] = run_cli(settings, "reference", "load", "stores", str(stores))
        worker = Worker(settings)
        worker.start()
        try:
            events = folder / "events.jsonl"
            lines = [orjson.dumps(event) for _source, event in shopper_events(OMAR)]
            events.write_bytes(b"\n".join([*lines[:-1], *POISON, lines[-1]]) + b"\n")
            runs["produce file"] = run_cli(settings, "produce", "file", str(events))
            # Omar's offer is the only one until the synthetic shoppers come.
            runs["tail"] = run_cli(settings, "tail", "--from-beginning", "--count", "1", "--json")
            traits = folder / "traits.csv"
            traits.write_text("userId,loyalty_tier\nomar,gold\n")
            runs["load traits"] = run_cli(settings, "load", "traits", str(traits))
            runs["produce synthetic"] = run_cli(
                settings, "produce", "synthetic", "--users", "2", "--duration", "1"
            )
            runs["report"] = run_cli(settings, "report", "--json")
            dead = asyncio.run(
                consume(settings, settings.topics.dlq, lambda r: len(r) >= len(POISON), 30)
            )
            url = f"http://127.0.0.1:{settings.web_port}/v1/profiles/omar/traits"
            headers = {"Authorization": f"Bearer {API_TOKEN.get_secret_value()}"}
            profile = httpx.get(url, headers=headers, timeout=10)
            metrics = worker.metrics()
        finally:
            worker.stop()
        log = (settings.data_dir / "worker.log").read_text()
        yield Run(settings, runs, log, metrics, profile, dead, list(llm.authorizations))


def test_topics_are_created_and_listed_through_the_secured_listener(run: Run) -> None:
    created, listed = run.runs["topics create"], run.runs["topics list"]
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created: ")
    assert listed.returncode == 0, listed.stderr
    assert run.settings.topics.offers in listed.stdout and "missing" not in listed.stdout


def test_every_producing_command_sends_through_it(run: Run) -> None:
    for name in ("reference load", "produce file", "load traits", "produce synthetic"):
        done = run.runs[name]
        assert done.returncode == 0, f"{name}: {done.stderr}"
        assert done.stdout.startswith("sent "), f"{name}: {done.stdout}"
    assert f"to {run.settings.broker_url}" in run.runs["produce file"].stdout


def test_a_worker_turns_events_into_an_offer_that_tail_reads(run: Run) -> None:
    tail = run.runs["tail"]
    assert tail.returncode == 0, tail.stderr
    offer = orjson.loads(tail.stdout)
    assert offer["user"] == "omar" and offer["source"] == "model"
    assert f"Authenticated as {run.settings.kafka_sasl_username.get_secret_value()} via" in (
        run.worker_log
    )
    assert run.profile.status_code == 200
    assert run.profile.json()["traits"]["loyalty_tier"] == "gold"  # the load came later
    assert {d.value for d in run.dead_letters} >= {line.strip() for line in POISON}  # as sent


def test_the_report_reads_through_it(run: Run) -> None:
    report = run.runs["report"]
    assert report.returncode == 0, report.stderr
    rows = [orjson.loads(line) for line in report.stdout.splitlines()]
    assert any(row["sent"] >= 1 for row in rows), rows


def test_the_llm_behind_tls_got_the_key(run: Run) -> None:
    assert run.llm_authorizations
    assert set(run.llm_authorizations) == {f"Bearer {LLM_API_KEY.get_secret_value()}"}


def test_no_secret_in_output_logs_metrics_or_dead_letters(run: Run) -> None:
    secrets = the_secrets(run.settings)
    assert len(secrets) == 4
    printed = [f"{name}: {done.stdout}{done.stderr}" for name, done in run.runs.items()]
    headers = [f"{key}={value!r}" for d in run.dead_letters for key, value in d.headers]
    assert any("kairos.dlq.reason" in h for h in headers)
    assert len(run.worker_log.splitlines()) > 5  # the worker did log
    places = {"output": "\n".join(printed), "worker log": run.worker_log,
              "metrics": run.metrics, "dead-letter headers": "\n".join(headers)}  # fmt: skip
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret in the {where}"


def test_settings_errors_show_no_secret(run: Run) -> None:
    env = settings_env(run.settings)
    bad_values = [
        {"KAIROS_PARTITIONS": "0"},
        {"KAIROS_KAFKA_SECURITY_PROTOCOL": "SSL"},
        {"KAIROS_API_TOKEN": "change-me"},
        {"KAIROS_KAFKA_SASL_MECHANISM": "GSSAPI"},
    ]
    for bad in bad_values:
        done = subprocess.run(
            [sys.executable, "-m", "streams.tools.cli", "topics", "list"], env={**env, **bad},
            capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("kairos: invalid settings:"), done.stderr
        for secret in the_secrets(run.settings):
            assert secret not in done.stderr, done.stderr


def test_a_wrong_password_stops_each_command_with_the_reason(
    secured: Secured, tmp_path: Path
) -> None:
    wrong = "not-" + secured.user.password
    settings = secure(settings_for_test("unused:1", "http://127.0.0.1:9/v1", "none", tmp_path),
                      secured, kafka_sasl_password=SecretStr(wrong))  # fmt: skip
    for command in (["topics", "create"], ["worker"], ["tail", "--idle", "1"], ["report"]):
        done = run_cli(settings, *command)  # a hang would time out
        assert done.returncode == 1, done.stderr
        assert f"Kafka at {secured.address} refused the SASL login" in done.stderr
        assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in done.stderr
        assert wrong not in done.stdout + done.stderr
        assert "Traceback" not in done.stderr


def test_a_plaintext_client_is_refused_on_the_secured_listener(
    secured: Secured, tmp_path: Path
) -> None:
    settings = settings_for_test(secured.address, "http://127.0.0.1:9/v1", "none", tmp_path)
    done = run_cli(settings, "topics", "list")
    assert done.returncode == 1, done.stderr
    assert f"Kafka at {secured.address} closed the connection unanswered" in done.stderr
    assert "(KAIROS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT): does its listener expect TLS?" in (
        done.stderr
    )


def test_a_certificate_from_an_untrusted_ca_fails_the_handshake(
    secured: Secured, tmp_path: Path
) -> None:
    settings = secure(settings_for_test("unused:1", "http://127.0.0.1:9/v1", "none", tmp_path),
                      secured, kafka_ca_file=None)  # fmt: skip
    done = run_cli(settings, "topics", "list")
    assert done.returncode == 1, done.stderr
    assert f"the TLS handshake with Kafka at {secured.address} failed" in done.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr


def test_the_demo_runs_through_the_secured_listener(secured: Secured, tmp_path: Path) -> None:
    with FakeLLM() as llm:
        settings = secure(settings_for_test("unused:1", llm.url, llm.model, tmp_path), secured)
        done = run_cli(settings, "demo", "--users", "3", "--duration", "5", "--rate", "5",
                       timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "topics: " in done.stdout and "offers that work? (kairos report)" in done.stdout


def mutual_tls(secured: Secured, folder: Path, certificate: bool) -> Settings:
    settings = settings_for_test(secured.mtls_address, "http://127.0.0.1:9/v1", "none", folder)
    cert, key = client_certificate(secured.tls, folder) if certificate else (None, None)
    return Settings(**{
        **settings.model_dump(), "kafka_security_protocol": "SSL",
        "kafka_ca_file": secured.tls.ca, "kafka_cert_file": cert, "kafka_key_file": key,
    })  # fmt: skip


def test_mutual_tls_creates_produces_and_reads(secured: Secured, tmp_path: Path) -> None:
    settings = mutual_tls(secured, tmp_path, certificate=True)
    created = run_cli(settings, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created: ")
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for _s, e in shopper_events(OMAR)))
    sent = run_cli(settings, "produce", "file", str(events))
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith(f"sent {len(shopper_events(OMAR))} events")
    tail = run_cli(settings, "tail", "--from-beginning", "--idle", "1")
    assert tail.returncode == 0, tail.stderr
    assert "0 offers" in tail.stderr  # read to the end; no worker made any


def test_mutual_tls_without_a_client_certificate_is_refused(
    secured: Secured, tmp_path: Path
) -> None:
    done = run_cli(mutual_tls(secured, tmp_path, certificate=False), "topics", "list")
    assert done.returncode == 1, done.stderr
    assert f"Kafka at {secured.mtls_address} closed the connection unanswered" in done.stderr
    assert "expect a client certificate (KAIROS_KAFKA_CERT_FILE)" in done.stderr


def test_an_api_left_open_on_purpose_is_logged_as_a_warning(
    secured: Secured, tmp_path: Path
) -> None:
    """The worker goes on to Kafka after the warning (here to be turned away there)."""
    settings = settings_for_test(secured.address, "http://127.0.0.1:9/v1", "none", tmp_path)
    open_api = settings.model_copy(update={"web_host": "0.0.0.0", "api_open": True})
    done = run_cli(open_api, "worker")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("kairos: the Profile API is open to anyone who can reach "
                               "KAIROS_WEB_HOST=0.0.0.0 (KAIROS_API_OPEN=true")  # fmt: skip
    assert f"Kafka at {secured.address} closed the connection unanswered" in lines[-1]


def test_a_tls_client_on_a_plaintext_listener_stops_with_the_reason(
    secured: Secured, tmp_path: Path
) -> None:
    settings = secure(settings_for_test("unused:1", "http://127.0.0.1:9/v1", "none", tmp_path),
                      secured, broker_url=secured.plaintext_address)  # fmt: skip
    done = run_cli(settings, "topics", "list")
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"kairos: Kafka at {secured.plaintext_address} reset the connection during the TLS "
        "handshake (KAIROS_KAFKA_SECURITY_PROTOCOL=SASL_SSL): is it a plaintext listener?\n"
    )  # at once: not retried


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_sasl_without_tls_by_each_other_mechanism(
    secured: Secured, tmp_path: Path, mechanism: str
) -> None:
    settings = secure(
        settings_for_test("unused:1", "http://127.0.0.1:9/v1", "none", tmp_path), secured,
        broker_url=secured.sasl_plaintext_address, kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism, kafka_ca_file=None,
    )  # fmt: skip
    created = run_cli(settings, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created: ")
