"""The embedded Kafka's start-up checks: each missing part is named."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from streams.errors import BrokerError
from streams.tools import broker
from streams.tools.kafka_probe import broker_ready, live_brokers
from streams.tools.process import free_port


def fake_java(folder: Path, banner: str) -> Path:
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return folder


def test_a_java_home_without_java_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(
        BrokerError, match=f"Java 17 or newer: JAVA_HOME={tmp_path} has no bin/java"
    ):
        broker.java()


def test_no_java_at_all_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BrokerError, match="Java 17 or newer: no java on PATH"):
        broker.java()


@pytest.mark.parametrize(
    ("banner", "shown"),
    [('openjdk version "11.0.22" 2024-01-16', 'version "11'), ('java version "1.8.0_402"', "1.8")],
)
def test_an_old_java_is_refused_with_its_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, banner: str, shown: str
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, banner)))
    with pytest.raises(BrokerError, match="needs Java 17 or newer") as caught:
        broker.java()
    assert shown in str(caught.value)
    assert "set JAVA_HOME to a newer JDK" in str(caught.value)


def test_java_17_is_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    home = fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15')
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert broker.java() == home / "bin" / "java"


def test_missing_jars_name_the_setting_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="no Kafka jars in") as caught:
        broker.kafka_lib(tmp_path)
    assert "KAIROS_KAFKA_LIB" in str(caught.value) and "make env" in str(caught.value)


def test_fetching_without_maven_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BrokerError, match=r"needs Maven \(mvn\) on PATH"):
        broker.fetch(tmp_path / "lib")


def test_cluster_ids_are_kafka_shaped() -> None:
    ids = {broker.cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_server_properties_keep_the_small_machine_settings(tmp_path: Path) -> None:
    props = broker.server_properties(9092, 9093, tmp_path)
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["offsets.topic.num.partitions"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.dirs"] == str(tmp_path)


def test_the_probe_reads_the_broker_count_and_fails_closed() -> None:
    # correlation id 1, throttle 0, 2 brokers (the rest of the answer is not read)
    assert live_brokers(b"\x00\x00\x00\x01" + b"\x00" * 4 + b"\x00\x00\x00\x02") == 2
    with pytest.raises(ValueError, match="correlation"):
        live_brokers(b"\x00\x00\x00\x07" + b"\x00" * 8)
    assert broker_ready("127.0.0.1", free_port()) is False  # nothing listens there
