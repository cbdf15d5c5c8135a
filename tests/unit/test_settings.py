"""Settings: typed, from env and YAML; a bad value names its variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.settings import SettingsError, load_settings
from tests.support.stack import REPO


def test_defaults_run_the_embedded_demo() -> None:
    settings = load_settings()
    assert settings.embedded_broker and settings.embedded_llm
    assert settings.topics.clickstream == "kairos.clickstream"
    assert settings.fetch_wait_ms == 20


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
    assert settings.fetch_wait_ms == 500


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
        ("KAIROS_CONFIG", "/nonexistent.yaml", "KAIROS_CONFIG='/nonexistent.yaml': no such file"),
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
        [sys.executable, "-m", "streams.cli", "topics", "list"],
        env={"PATH": "/usr/bin:/bin", "KAIROS_PARTITIONS": "-3"},
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert "KAIROS_PARTITIONS: Input should be greater than or equal to 1" in result.stderr
    assert "Traceback" not in result.stderr
