"""Records larger than a dead letter can carry, on a source topic that
allows them: each is dead-lettered with its head, its size and its place,
every good event around them is applied, and the worker never stops."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.admin import NewTopic

from streams import clients
from streams.codecs import (
    DLQ_CODE,
    DLQ_OFFSET,
    DLQ_REASON,
    DLQ_SIZE,
    DLQ_STAGE,
    DLQ_TOPIC,
    dumps,
    header_map,
    loads,
)
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


def added(n: int, quantity: int) -> bytes:
    return dumps({"type": "track", "event": "Product Added", "userId": "cart-1",
                  "messageId": f"add-{n}", "timestamp": 1_795_000_000_000 + n,
                  "properties": {"product_id": "p-101", "quantity": quantity}})  # fmt: skip


def test_an_event_the_fold_cannot_apply_is_dead_lettered_and_the_person_goes_on(
    broker: str, tmp_path: Path
) -> None:
    """A cart quantity at the 64-bit limit, then one more: the profile would
    hold an integer orjson cannot write. That event is dead-lettered with
    the reason; the worker goes on, and so do the person's later events."""
    settings = settings_for_test(broker, "http://127.0.0.1:9/v1", "none", tmp_path)
    later = [page(n) for n in range(5)] + [added(3, 1).replace(b"cart-1", b"cart-2")]
    values = [added(1, 2**64 - 1), added(2, 1), *later]
    worker = Worker(settings)
    worker.start()
    assert worker.process.proc is not None
    pid = worker.process.proc.pid
    try:
        asyncio.run(send(settings, values))
        applied = worker.wait_for("kairos_state_updates_total", len(values) - 1, seconds=60)
        [letter] = asyncio.run(consume(settings, settings.topics.dlq, bool, 30))
        api = f"http://127.0.0.1:{settings.web_port}/v1/profiles"
        cart = httpx.get(f"{api}/cart-1/features?at=1795000001000", timeout=10).json()
        same = worker.process.running and worker.process.proc.pid == pid
    finally:
        worker.stop()
    headers = header_map(letter.headers)
    assert applied == len(values) - 1 and same
    assert (headers[DLQ_CODE], headers[DLQ_STAGE]) == ("internal_error", "context")
    assert headers[DLQ_REASON] == "state update failed: TypeError('Integer exceeds 64-bit range')"
    assert loads(letter.value)["id"] == "add-2"
    assert cart["features"]["cart"]["items"] == 2**64 - 1  # add-1's, not add-2's
