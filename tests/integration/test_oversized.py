"""Records larger than a dead letter can carry, on a source topic that
allows them: each is dead-lettered with its head, its size and its place,
every good event around them is applied, and the worker never stops."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import NewTopic

from streams import clients
from streams.codecs import DLQ_CODE, DLQ_OFFSET, DLQ_REASON, DLQ_SIZE, DLQ_TOPIC, dumps, header_map
from streams.runtime.admin import connect_admin
from streams.runtime.deadletters import HEADROOM
from tests.support.stack import Worker, consume, settings_for_test

pytestmark = pytest.mark.broker

MIB = 1024 * 1024
SIZES = (1 * MIB, 2 * MIB, 10 * MIB)
# The source topic takes records up to this; the producer sends them.
TOPIC_MAX = 12 * MIB


def page(n: int) -> bytes:
    return dumps({"type": "page", "name": "/", "userId": f"u{n % 7}", "messageId": f"good-{n}"})


def huge(size: int) -> bytes:
    """A track event of ``size`` bytes, valid but for its size."""
    head = b'{"type": "track", "event": "Big", "userId": "u1", "properties": {"blob": "'
    tail = b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def make_source_topic(settings: Any) -> None:
    admin = await connect_admin(settings)
    try:
        config = {"max.message.bytes": str(TOPIC_MAX)}
        await admin.create_topics(
            [NewTopic(settings.topics.clickstream, settings.partitions, 1, topic_configs=config)]
        )
    finally:
        await admin.close()


async def send(settings: Any, values: list[bytes]) -> list[int]:
    """Produce ``values`` in order to partition 0 of the source topic; their offsets."""
    producer = clients.producer(settings, max_request_size=TOPIC_MAX)
    await producer.start()
    try:
        sent = [await producer.send(settings.topics.clickstream, v, partition=0) for v in values]
        return [(await delivery).offset for delivery in sent]
    finally:
        await producer.stop()


def test_records_of_1_2_and_10_mib_are_dead_lettered_with_their_head_and_stop_nothing(
    broker: str, tmp_path: Path
) -> None:
    settings = settings_for_test(broker, "http://127.0.0.1:9/v1", "none", tmp_path)
    asyncio.run(make_source_topic(settings))
    values: list[bytes] = []
    for n, size in enumerate(SIZES):
        values += [page(10 * n + k) for k in range(10)] + [huge(size)]
    values += [page(100 + k) for k in range(10)]  # after the last one
    good = len(values) - len(SIZES)
    worker = Worker(settings)
    worker.start()
    assert worker.process.proc is not None
    pid = worker.process.proc.pid
    try:
        offsets = asyncio.run(send(settings, values))
        applied = worker.wait_for("kairos_state_updates_total", good, seconds=90)
        dead = asyncio.run(consume(settings, settings.topics.dlq, lambda r: len(r) >= 3, 60))
        running = worker.process.running
        same = worker.process.proc is not None and worker.process.proc.pid == pid
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert applied == good
    assert running and same  # the worker that started is the one that took them all
    assert "stopping the worker" not in log and "MessageSizeTooLarge" not in log
    limit = 1_000_000 - HEADROOM
    big = {
        offset: value for offset, value in zip(offsets, values, strict=True) if len(value) > MIB - 1
    }
    assert len(dead) == len(SIZES)
    for letter in dead:
        headers = header_map(letter.headers)
        original = big[int(headers[DLQ_OFFSET])]
        assert headers[DLQ_TOPIC] == settings.topics.clickstream
        assert headers[DLQ_CODE] == "oversized"
        assert headers[DLQ_SIZE] == str(len(original))
        assert letter.value == original[:limit]
        assert headers[DLQ_REASON] == (
            f"payload is {len(original)} bytes; the limit is 65536; the record is "
            f"{len(original)} bytes, more than a dead letter carries: this one holds its "
            f"first {limit}"
        )
