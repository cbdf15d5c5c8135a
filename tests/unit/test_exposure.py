"""No open doors: a worker reachable from beyond loopback needs a token."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from pydantic import SecretStr

from streams.exposure import api_exposure, is_loopback
from streams.settings import Settings, secret_variables
from tests.support.stack import REPO


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.5", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.7", False), ("kairos-0.example", False)],
)  # fmt: skip
def test_only_loopback_addresses_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_worker_on_all_addresses_without_a_token_is_refused() -> None:
    exposure = api_exposure(Settings(web_host="0.0.0.0"))
    assert "KAIROS_WEB_HOST=0.0.0.0 is not a loopback address" in exposure.refusal
    assert "KAIROS_API_TOKEN" in exposure.refusal and "KAIROS_API_OPEN=true" in exposure.refusal


def test_an_explicitly_open_api_starts_with_a_warning() -> None:
    exposure = api_exposure(Settings(web_host="0.0.0.0", api_open=True))
    assert not exposure.refusal
    assert "open to anyone who can reach KAIROS_WEB_HOST=0.0.0.0" in exposure.warning


@pytest.mark.parametrize(
    "settings",
    [Settings(), Settings(web_host="0.0.0.0", api_token=SecretStr("a-real-token"))],
    ids=["loopback", "token"],
)
def test_loopback_or_a_token_starts_quietly(settings: Settings) -> None:
    assert api_exposure(settings) == type(api_exposure(settings))()


def test_the_worker_command_stops_before_touching_kafka() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "worker"],
        env={
            "PATH": "/usr/bin:/bin",
            "KAIROS_WEB_HOST": "0.0.0.0",
            "KAIROS_BROKER_URL": "127.0.0.1:9",
        },
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("kairos: KAIROS_WEB_HOST=0.0.0.0 is not a loopback address")
    assert "Traceback" not in result.stderr


def k8s_resources() -> list[dict]:
    return [
        resource
        for path in sorted((REPO / "deploy" / "k8s").glob("*.yaml"))
        for resource in yaml.safe_load_all(path.read_text())
    ]


def test_the_manifests_ship_no_secret_and_need_the_operators() -> None:
    resources = k8s_resources()
    assert not [r for r in resources if r["kind"] == "Secret"]
    workers = next(r for r in resources if r["kind"] == "StatefulSet")["spec"]["template"]["spec"]
    for container in workers["containers"] + workers.get("initContainers", []):
        refs = [ref["secretRef"] for ref in container.get("envFrom", []) if "secretRef" in ref]
        assert refs == [{"name": "kairos", "optional": False}], container["name"]


def test_the_readme_says_how_to_create_that_secret() -> None:
    readme = (REPO / "README.md").read_text()
    command = readme[readme.index("kubectl create secret generic kairos") :].split("```")[0]
    assert "KAIROS_API_TOKEN=" in command and "KAIROS_COUPON_SECRET=" in command
    assert "change-me" not in command


def test_every_secret_setting_is_known_as_one() -> None:
    assert secret_variables() == {
        "KAIROS_API_TOKEN", "KAIROS_COUPON_SECRET", "KAIROS_LLM_API_KEY",
        "KAIROS_KAFKA_SASL_USERNAME", "KAIROS_KAFKA_SASL_PASSWORD",
    }  # fmt: skip
