"""The embedded runtime against the real broker: topics, worker start-up, metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from streams.codecs import header_map
from streams.errors import BrokerError
from streams.runtime.admin import create_topics, missing_topics
from streams.runtime.topics import topic_specs
from streams.tools.broker import start_broker
from tests.support.stack import Worker, consume, produce, run_cli, settings_for_test

pytestmark = pytest.mark.broker
NO_LLM = "http://127.0.0.1:9/v1"


def test_topics_create_is_idempotent(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path)
    names = [spec.name for spec in topic_specs(settings)]
    assert asyncio.run(missing_topics(settings)) == names
    assert asyncio.run(create_topics(settings)) == names
    assert asyncio.run(create_topics(settings)) == []
    assert asyncio.run(missing_topics(settings)) == []
    assert all(name.startswith(settings.app_id + ".internal.") for name in names[-3:])


def test_worker_refuses_to_start_without_topics(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path)
    result = run_cli(settings, "worker")
    assert result.returncode == 1
    assert "these topics do not exist" in result.stderr
    assert "kairos topics create" in result.stderr


def test_broker_port_in_use_is_a_clear_error(broker: str, tmp_path: Path) -> None:
    port = int(broker.rsplit(":", 1)[1])
    with pytest.raises(BrokerError, match=f"port {port} is already in use"):
        start_broker(port, tmp_path, tmp_path / "broker.log")


POISON = {
    "oversized": b'{"type": "page", "userId": "u1", "name": "' + b"x" * 70_000 + b'"}',
    "not_utf8": b'{"type": "page", "userId": "\xff\xfe"}',
    "too_deep": b'{"type": "page", "userId": "u1", "properties": ' + b"[" * 50 + b"]" * 50 + b"}",
    "unknown_type": b'{"type": "shout", "userId": "u1"}',
    "bad_timestamp": b'{"type": "page", "userId": "u1", "timestamp": "next tuesday"}',
    "wrong_type": b'{"type": "track", "event": "X", "userId": "u1", "properties": [1]}',
    "missing_field": b'{"type": "track", "userId": "u1", "timestamp": 1795000000000}',
    "invalid_json": b'{"type": "page",',
    "empty": b"",
}


def test_every_kind_of_bad_input_is_kept_and_the_stream_goes_on(
    broker: str, tmp_path: Path
) -> None:
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path)
    worker = Worker(settings)
    worker.start()
    good = {"type": "page", "userId": "u1", "timestamp": 1795000000000, "messageId": "g"}
    try:
        asyncio.run(produce(settings, [("clickstream", raw) for raw in POISON.values()]))
        asyncio.run(produce(settings, [("clickstream", good)]))
        assert worker.wait_for("kairos_state_updates_total", 1) == 1
        dead = asyncio.run(
            consume(settings, settings.topics.dlq, lambda r: len(r) >= len(POISON), seconds=30)
        )
    finally:
        worker.stop()
    letters = {header_map(r.headers)["kairos.dlq.code"]: r for r in dead}
    assert sorted(letters) == sorted(POISON)
    for code, raw in POISON.items():
        letter = letters[code]
        headers = header_map(letter.headers)
        assert (letter.value or b"") == raw  # the original bytes, as they were
        assert headers["kairos.dlq.topic"] == settings.topics.clickstream
        assert headers["kairos.dlq.reason"] and headers["kairos.dlq.stage"] == "ingest"
    assert "limit is 65536" in header_map(letters["oversized"].headers)["kairos.dlq.reason"]


def test_worker_serves_ready_and_counts_dead_letters(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path)
    worker = Worker(settings)
    worker.start()
    try:
        ready = httpx.get(f"http://127.0.0.1:{settings.web_port}/ready", timeout=5)
        assert ready.json() == {"ready": True}
        page = {"type": "page", "userId": "u1", "name": "/home"}
        asyncio.run(produce(settings, [("clickstream", page), ("clickstream", b"{oops")]))
        text = ""
        for _ in range(100):
            text = worker.metrics()
            if 'kairos_dead_letters_total{code="invalid_json",stage="ingest"} 1.0' in text:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert 'kairos_dead_letters_total{code="invalid_json",stage="ingest"} 1.0' in text
        assert 'kairos_events_in_total{kind="page",source="clickstream"} 1.0' in text
    finally:
        worker.stop()


def test_load_traits_command_feeds_profiles(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path)
    table = tmp_path / "traits.csv"
    table.write_text("userId,first_name,loyalty_tier\nu1,Alice,gold\nu2,Bob,\n,Nobody,silver\n")
    worker = Worker(settings)
    worker.start()
    try:
        result = run_cli(settings, "load", "traits", str(table))
        assert result.returncode == 0, result.stderr
        assert "sent 3 events" in result.stdout
        assert worker.wait_for("kairos_state_updates_total", 2) == 2
        assert worker.wait_for("kairos_dead_letters_total", 1) == 1  # the row with no user
    finally:
        worker.stop()
