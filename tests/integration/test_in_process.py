"""Bundles folded as ingest produces them, on a live worker.

Events that arrive once the worker is ready are folded into their profiles
by the worker's own ingest (agents/handoffs.py, ``InProcess``). The context
agent then reads each bundle back from kairos.internal.events and must not
fold it a second time: every event counts once, none as a duplicate. An
event behind the partition's watermark is applied the same way, and counted
late, not dead-lettered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.handoffs import InProcess
from streams.codecs import header_map, loads
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


def test_bundles_fold_once_and_a_late_event_is_applied_not_dead_lettered(
    broker: str, tmp_path: Path
) -> None:
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
        applied = 5 * len(USERS) + 1
        assert worker.wait_for("kairos_state_updates_total", applied) == applied

        def complete(records: list[Any]) -> bool:
            return sum(len(events(r)) for r in records) >= applied

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
        # Three hours behind u0's partition: out of the windows, in the profile.
        late_events = labelled(worker.metrics(), "kairos_event_time_total", "outcome")
        assert late_events == {"late": 1.0}
        assert worker.counter("kairos_dead_letters_total") == 0
        url = f"http://127.0.0.1:{settings.web_port}/v1/profiles/u0/events"
        shown = httpx.get(url, timeout=5).json()["events"]
        assert {"timestamp": T0 - 3 * HOUR, "type": "page", "name": "/"} in shown
    finally:
        worker.stop()
