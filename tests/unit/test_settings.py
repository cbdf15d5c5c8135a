"""Settings: typed, from env and YAML; a bad value names its variable."""

from __future__ import annotations

import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from streams.errors import SettingsError
from streams.settings import Settings, load_settings, prepare_data_dir, settings_env
from tests.support.stack import REPO


def test_defaults_run_the_embedded_demo() -> None:
    settings = load_settings()
    assert settings.embedded_broker and settings.embedded_llm
    assert settings.topics.clickstream == "kairos.clickstream"
    assert settings.consumer_fetch_wait_ms == 500


def test_env_and_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "kairos.yaml"
    config.write_text("partitions: 8\nllm_url: http://vllm:8000/v1\ntopics:\n  offers: my.offers\n")
    monkeypatch.setenv("KAIROS_CONFIG", str(config))
    monkeypatch.setenv("KAIROS_PARTITIONS", "12")
    monkeypatch.setenv("KAIROS_BROKER_URL", "kafka://k1:9092, k2:9093")
    settings = load_settings()
    assert settings.partitions == 12  # the environment wins over the file
    assert settings.llm_base_url == "http://vllm:8000/v1"
    assert settings.topics.offers == "my.offers"
    assert settings.bootstrap_servers == "k1:9092,k2:9093"
    assert settings.consumer_fetch_wait_ms == 500


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("KAIROS_PARTITIONS", "zero", "KAIROS_PARTITIONS: Input should be a valid integer"),
        ("KAIROS_LLM_URL", "vllm:8000", "KAIROS_LLM_URL: expected an http(s) URL"),
        ("KAIROS_BROKER_URL", "nohost", "KAIROS_BROKER_URL: expected host:port"),
        ("KAIROS_TOPICS__OFFERS", "a b", "KAIROS_TOPICS__OFFERS: 'a b' is not a valid Kafka topic"),
        ("KAIROS_STORE", "redis://", "KAIROS_STORE: expected 'rocksdb://' or 'memory://'"),
        ("KAIROS_LLM_TIMEOUT_S", "-1", "KAIROS_LLM_TIMEOUT_S: Input should be greater than 0"),
        ("KAIROS_LLM_TIMOUT_S", "5", "KAIROS_LLM_TIMOUT_S: unknown setting"),
        (
            "KAIROS_FRESHNESS_SLO_P99_MS",
            "0",
            "KAIROS_FRESHNESS_SLO_P99_MS: Input should be greater than or equal to 1",
        ),
        (
            "KAIROS_FRESHNESS_SLO_P99_MS",
            "2s",
            "KAIROS_FRESHNESS_SLO_P99_MS: Input should be a valid integer",
        ),
        (
            "KAIROS_BROKER_WAIT_S",
            "-1",
            "KAIROS_BROKER_WAIT_S: Input should be greater than or equal to 0",
        ),
        ("KAIROS_CONFIG", "/nonexistent.yaml", "KAIROS_CONFIG='/nonexistent.yaml': no such file"),
        (
            "KAIROS_TIMER_IDLE_S",
            "0.5",
            "KAIROS_TIMER_IDLE_S: Input should be greater than or equal to 1",
        ),
        (
            "KAIROS_TIMER_IDLE_S",
            "86400",
            "KAIROS_TIMER_IDLE_S: Input should be less than or equal to 3600",
        ),
        (
            "KAIROS_ALLOWED_LATENESS_S",
            "7200",
            "KAIROS_ALLOWED_LATENESS_S: Input should be less than or equal to 3600",
        ),
        (
            "KAIROS_MAX_FUTURE_S",
            "-1",
            "KAIROS_MAX_FUTURE_S: Input should be greater than or equal to 0",
        ),
        (
            "KAIROS_MIN_INSYNC_REPLICAS",
            "2",
            "KAIROS_MIN_INSYNC_REPLICAS=2 is more than KAIROS_REPLICATION_FACTOR=1",
        ),
        (
            "KAIROS_SEND_QUIET_HOURS",
            "21:00-24:00",
            "KAIROS_SEND_QUIET_HOURS: expected HH:MM-HH:MM (such as 21:00-08:00) or off",
        ),
        (
            "KAIROS_SEND_QUIET_HOURS",
            "9pm-8am",
            "KAIROS_SEND_QUIET_HOURS: expected HH:MM-HH:MM (such as 21:00-08:00) or off",
        ),
        (
            "KAIROS_SEND_QUIET_HOURS",
            "08:00-08:00",
            "KAIROS_SEND_QUIET_HOURS: starts and ends at 08:00: say off for no quiet hours",
        ),
    ],
)
def test_bad_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert message in str(caught.value)


def test_cli_stops_on_a_bad_setting_with_its_name() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "topics", "list"],
        env={"PATH": "/usr/bin:/bin", "KAIROS_PARTITIONS": "-3"},
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert "KAIROS_PARTITIONS: Input should be greater than or equal to 1" in result.stderr
    assert "Traceback" not in result.stderr


# What Kubernetes sets in a pod for the Service kairos-api (port 80, named web).
SERVICE_LINKS = {
    "KAIROS_API_SERVICE_HOST": "10.96.0.12",
    "KAIROS_API_SERVICE_PORT": "80",
    "KAIROS_API_SERVICE_PORT_WEB": "80",
    "KAIROS_API_PORT": "tcp://10.96.0.12:80",
    "KAIROS_API_PORT_80_TCP": "tcp://10.96.0.12:80",
    "KAIROS_API_PORT_80_TCP_PROTO": "tcp",
    "KAIROS_API_PORT_80_TCP_PORT": "80",
    "KAIROS_API_PORT_80_TCP_ADDR": "10.96.0.12",
}


def test_send_quiet_hours_span_midnight_or_are_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().send_quiet == (time(21), time(8))
    monkeypatch.setenv("KAIROS_SEND_QUIET_HOURS", " 22:30 - 06:15 ")
    assert load_settings().send_quiet == (time(22, 30), time(6, 15))
    for off in ("off", ""):
        monkeypatch.setenv("KAIROS_SEND_QUIET_HOURS", off)
        assert load_settings().send_quiet is None


def test_kubernetes_service_links_stay_unknown_settings_with_a_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SERVICE_LINKS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAIROS_LLM_TIMOUT_S", "5")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    hint = "(a Kubernetes service link of the Service kairos-api?)"
    for name in SERVICE_LINKS:
        assert f"  {name}: unknown setting {hint}" in lines
    assert "  KAIROS_LLM_TIMOUT_S: unknown setting" in lines  # a typo gets no such hint
    assert "enableServiceLinks: false" in lines[-1]


def test_a_typo_alone_gets_no_service_link_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIROS_WEB_PORTT", "6066")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value) == "invalid settings:\n  KAIROS_WEB_PORTT: unknown setting"


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_api_token_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("KAIROS_API_TOKEN", value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "KAIROS_API_TOKEN: must not be empty" in str(caught.value)


def test_a_missing_data_dir_is_created_with_its_parents(tmp_path: Path) -> None:
    wanted = tmp_path / "volume" / "kairos"
    assert prepare_data_dir(Settings(data_dir=wanted)) == wanted
    assert wanted.is_dir()


@pytest.mark.parametrize(
    ("below", "message"),
    [("", "not a directory"), ("sub", "cannot create it: Not a directory")],
    ids=["a file", "under a file"],
)
def test_an_uncreatable_data_dir_names_the_variable(
    tmp_path: Path, below: str, message: str
) -> None:
    path = tmp_path / "file" / below if below else tmp_path / "file"
    (tmp_path / "file").write_text("")
    with pytest.raises(SettingsError) as caught:
        prepare_data_dir(Settings(data_dir=path))
    assert str(caught.value) == f"KAIROS_DATA_DIR={str(path)!r}: {message}"


def test_an_unwritable_data_dir_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("streams.settings.os.access", lambda path, mode: False)
    with pytest.raises(SettingsError) as caught:
        prepare_data_dir(Settings(data_dir=tmp_path))
    assert str(caught.value) == f"KAIROS_DATA_DIR={str(tmp_path)!r}: this user cannot write there"


def test_worker_stops_on_an_uncreatable_data_dir_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", "worker"],
        env={"PATH": "/usr/bin:/bin", "KAIROS_DATA_DIR": str(tmp_path / "file" / "data")},
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"kairos: KAIROS_DATA_DIR='{tmp_path}/file/data': cannot create it: Not a directory"
    ]


def test_no_quiet_hours_reach_a_subprocess_as_off() -> None:
    # A worker started with settings_env must not fall back to the default hours.
    env = settings_env(Settings(send_quiet_hours=None))
    assert env["KAIROS_SEND_QUIET_HOURS"] == "off"
    assert Settings(send_quiet_hours=env["KAIROS_SEND_QUIET_HOURS"]).send_quiet is None
