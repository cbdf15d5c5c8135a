"""Stores and products updated at runtime through the reference topic."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.codecs import header_map, loads
from tests.support.stack import Worker, consume, produce, run_cli, settings_for_test

pytestmark = pytest.mark.broker
NO_LLM = "http://127.0.0.1:9/v1"
T0 = 1_795_000_000_000
NEW_STORE = {"id": "s-harbor", "name": "Harbor", "lat": 41.3, "lon": -72.9, "radius_m": 90,
             "hours": "09:00-21:00", "categories": ["outdoor"]}  # fmt: skip


async def send_raw(settings: Any, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topics.reference, value, key=key)
    finally:
        await producer.stop()


def test_a_store_added_at_runtime_fires_moments(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps([NEW_STORE, {"id": "s-x", "name": "X", "lat": 1}]))
    good = tmp_path / "stores.jsonl"
    good.write_bytes(orjson.dumps(NEW_STORE) + b"\n")
    worker = Worker(settings)
    worker.start()
    try:
        refused = run_cli(settings, "reference", "load", "stores", str(bad))
        assert refused.returncode == 1
        assert "nothing sent; row 2: store 's-x': missing 'lon'" in refused.stderr

        assert run_cli(settings, "reference", "load", "stores", str(good)).returncode == 0
        asyncio.run(send_raw(settings, b"store:s-bad", b"{not json"))
        assert worker.wait_for("kairos_reference_updates_total", 2) == 2

        asyncio.run(produce(settings, [
            ("clickstream", {"type": "identify", "userId": "ada", "timestamp": T0,
                             "traits": {"favorite_category": "outdoor"}, "messageId": "i1"}),
            ("location", {"userId": "ada", "lat": 41.3003, "lon": -72.9, "timestamp": T0 + 60_000,
                          "messageId": "p1"}),
        ]))  # fmt: skip
        moments = asyncio.run(consume(settings, f"{settings.topics.internal_prefix}moments",
                                      lambda r: len(r) >= 1, seconds=30))  # fmt: skip
        assert [loads(m.value)["store_id"] for m in moments] == ["s-harbor"]

        [letter] = asyncio.run(consume(settings, settings.topics.dlq, lambda r: len(r) >= 1, 30))
        headers = header_map(letter.headers)
        assert letter.value == b"{not json"
        assert headers["kairos.dlq.code"] == "bad_reference"
        assert headers["kairos.dlq.reason"].startswith("store 's-bad' is not valid JSON")
    finally:
        worker.stop()
