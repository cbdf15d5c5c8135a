"""Bundles folded as ingest produces them, on a live worker.

Events that arrive once the worker is ready are folded into their profiles
by the worker's own ingest (agents/handoffs.py, ``InProcess``). The context
agent then reads each bundle back from kairos.internal.events and must not
fold it a second time: every event counts once, none as a duplicate. A
dead letter from such a bundle names where the bundle landed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agents.handoffs import InProcess
from streams.codecs import header_map, loads
from streams.keys import Partitioner
from tests.support.stack import Worker, consume, labelled, produce, settings_for_test

pytestmark = pytest.mark.broker
NO_LLM = "http://127.0.0.1:9/v1"
T0 = 1_795_000_000_000
HOUR = 3_600_000
USERS = [f"u{n}" for n in range(8)]


def views(round_: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("clickstream", {"type": "track", "event": "Product Viewed", "userId": user,
                         "properties": {"product_id": "p-101"}, "timestamp": T0 + round_,
                         "messageId": f"view-{round_}-{user}"})
        for user in USERS
    ]  # fmt: skip


def events(record: Any) -> list[dict[str, Any]]:
    """The events of a bundle on kairos.internal.events (none in a sweep marker)."""
    return [event for event in loads(record.value) if event.get("kind") != "sweep"]


def test_bundles_fold_once_and_dead_letters_name_their_bundle(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path, partitions=2)
    events_topic = f"{settings.topics.internal_prefix}events"
    worker = Worker(settings)
    worker.start()  # ready: partitions assigned, tables recovered
    try:
        for round_ in range(5):
            asyncio.run(produce(settings, views(round_)))
        late = {"type": "page", "name": "/", "userId": "u0", "timestamp": T0 - 3 * HOUR,
                "messageId": "late"}  # fmt: skip
        asyncio.run(produce(settings, [("clickstream", late)]))
        applied = 5 * len(USERS)
        assert worker.wait_for("kairos_state_updates_total", applied) == applied

        def complete(records: list[Any]) -> bool:
            return sum(len(events(r)) for r in records) >= applied + 1

        bundles = asyncio.run(consume(settings, events_topic, complete, seconds=30))
        bundles = [r for r in bundles if events(r)]  # not the sweep markers
        # Produced after the worker was ready: every bundle was folded by ingest ...
        assert bundles and all(InProcess.HEADER in header_map(r.headers) for r in bundles)
        # ... and the agent, reading each back, skipped it: each event counts once.
        assert worker.wait_for("kairos_context_bundles_total", len(bundles)) == len(bundles)
        paths = labelled(worker.metrics(), "kairos_context_bundles_total", "path")
        assert paths == {"in_process": len(bundles)}
        assert worker.counter("kairos_state_updates_total") == applied
        assert worker.counter("kairos_duplicates_total") == 0

        [letter] = asyncio.run(consume(settings, settings.topics.dlq, bool, seconds=30))
    finally:
        worker.stop()
    headers = header_map(letter.headers)
    assert headers["kairos.dlq.code"] == "too_late"
    assert headers["kairos.dlq.stage"] == "context"
    assert loads(letter.value)["id"] == "late"
    # It names the bundle that carried the event, on kairos.internal.events.
    assert headers["kairos.dlq.topic"] == events_topic
    partition, offset = int(headers["kairos.dlq.partition"]), int(headers["kairos.dlq.offset"])
    assert partition == Partitioner(settings.partitions)("u0")
    [bundle] = [r for r in bundles if (r.partition, r.offset) == (partition, offset)]
    assert "late" in [event["id"] for event in events(bundle)]
    assert InProcess.HEADER in header_map(bundle.headers)
