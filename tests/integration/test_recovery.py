"""Restart recovery on the embedded Kafka, with the demo's settings.

The producer batches, and the worker writes its changelog in record
batches, so recovery reads batched, compacted partitions to their end
offsets. The worker is killed with SIGKILL; its local RocksDB
is then deleted, so the profile must come back from the changelog alone;
then it restarts once more from its own disk. Each time, a moment's profile
snapshot shows what the worker holds: every event once, none lost, none
twice.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.codecs import loads
from streams.runtime.admin import create_topics
from tests.support.stack import Worker, consume, produce, settings_for_test

pytestmark = pytest.mark.broker
NO_LLM = "http://127.0.0.1:9/v1"
T0 = 1_795_000_000_000
HOUR = 3_600_000
FLATIRON = (40.7411, -73.9897)
SOHO = (40.7233, -74.0030)


def history() -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """Background users plus one shopper (anonymous, then identified); applied count."""
    items: list[tuple[str, dict[str, Any]]] = []
    for n in range(900):  # enough per partition for multi-record changelog batches
        items.append(
            (
                "clickstream",
                {
                    "type": "page",
                    "name": "/",
                    "userId": f"bg{n % 300}",
                    "timestamp": T0 + n,
                    "messageId": f"bg-{n}",
                },
            )
        )
    for n in range(12):
        items.append(
            (
                "clickstream",
                {
                    "type": "track",
                    "event": "Product Viewed",
                    "anonymousId": "anon-7",
                    "timestamp": T0 + n,
                    "messageId": f"view-{n}",
                    "properties": {"product_id": f"p-10{n % 6}", "category": "running"},
                },
            )
        )
    items.append(
        (
            "clickstream",
            {
                "type": "identify",
                "anonymousId": "anon-7",
                "userId": "omar",
                "traits": {"first_name": "Omar"},
                "timestamp": T0 + 20,
                "messageId": "ident",
            },
        )
    )
    for n in range(3):
        items.append(
            (
                "crm",
                {
                    "type": "order",
                    "userId": "omar",
                    "order_id": f"o{n}",
                    "total": 10.0,
                    "timestamp": T0 + 30 + n,
                    "messageId": f"ord-{n}",
                },
            )
        )
    items += items[900:904]  # a producer's retries: the same messageIds again
    return items, 900 + 12 + 1 + 3


def ping(at: tuple[float, float], ts: int, message_id: str) -> tuple[str, dict[str, Any]]:
    return "location", {
        "userId": "omar",
        "lat": at[0],
        "lon": at[1],
        "timestamp": ts,
        "messageId": message_id,
    }


def omar_at(settings: Any, store: str) -> dict[str, Any]:
    """The profile snapshot in Omar's moment at ``store``."""

    def found(records: list[Any]) -> bool:
        return any(loads(r.value)["store_id"] == store for r in records)

    records = asyncio.run(
        consume(settings, f"{settings.topics.internal_prefix}moments", found, seconds=60)
    )
    [moment] = [loads(r.value) for r in records if loads(r.value)["store_id"] == store]
    assert moment["user"] == "omar"
    return moment["profile"]


def omar_features(settings: Any) -> dict[str, Any]:
    """Omar's session features at a fixed event time, from the Profile API."""
    url = f"http://127.0.0.1:{settings.web_port}/v1/profiles/omar/features?at={T0 + 60_000}"
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["features"]


def test_state_survives_sigkill_lost_disk_and_restart(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path, partitions=4)
    items, applied = history()
    asyncio.run(create_topics(settings))
    asyncio.run(produce(settings, items))
    worker = Worker(settings)
    worker.start()
    try:
        assert worker.wait_for("kairos_state_updates_total", applied) == applied
        assert worker.counter("kairos_duplicates_total") == 4
        # The anonymous history reaches Omar's profile by a forwarded merge,
        # which may land after the last event is counted.
        assert worker.wait_for("kairos_identity_merges_total", 1) == 1
        features = omar_features(settings)
        assert features["windows"]["15m"] == {"events": 12, "products": 6, "categories": 1}
        worker.kill()
        shutil.rmtree(settings.data_dir / "worker")  # local state gone: changelog only

        worker.start()
        assert omar_features(settings) == features
        asyncio.run(produce(settings, [ping(FLATIRON, T0 + HOUR, "ping-1")]))
        profile = omar_at(settings, "s-flatiron")
        assert profile["n"] == 12 + 1 + 3 + 1
        assert profile["ids"] == ["anon-7"]
        assert profile["traits"]["first_name"][0] == "Omar"
        assert profile["orders"][0] == 3
        assert len(profile["views"]) == 12
        worker.stop()

        worker.start()  # from its own RocksDB, reading only the changelog after it
        assert worker.counter("kairos_state_updates_total") == 0
        asyncio.run(produce(settings, [ping(SOHO, T0 + 8 * HOUR, "ping-2")]))
        profile = omar_at(settings, "s-soho")
        assert profile["n"] == 12 + 1 + 3 + 2
        assert profile["orders"][0] == 3
    finally:
        worker.stop()
