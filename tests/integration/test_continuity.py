"""A skipped range of the internal events is read back from the broker, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from agents.continuity import read_range
from streams import clients
from streams.runtime.admin import create_topics
from streams.settings import Settings
from tests.support.stack import settings_for_test

pytestmark = pytest.mark.broker


async def fill_then_read(settings: Settings, topic: str, offsets: range) -> list[tuple[int, bytes]]:
    producer = clients.producer(settings, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait(topic, f"bundle {n}".encode(), partition=1)
    finally:
        await producer.stop()
    records = await read_range(
        lambda: clients.consumer(settings, enable_auto_commit=False),
        TopicPartition(topic, 1), offsets,
    )  # fmt: skip
    return [(r.offset, r.value) for r in records]


def test_the_records_of_a_skipped_range_are_read_back_in_order(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, "http://127.0.0.1:9/v1", "none", tmp_path)
    asyncio.run(create_topics(settings))
    topic = settings.topics.internal_prefix + "events"
    got = asyncio.run(fill_then_read(settings, topic, range(3, 7)))
    assert got == [(n, f"bundle {n}".encode()) for n in range(3, 7)]
