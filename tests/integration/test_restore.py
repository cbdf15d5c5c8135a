"""The bulk changelog restore (streams/runtime/restore.py) on the embedded Kafka,
into a real Faust RocksDB store of an app that is never started."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.metrics import Metrics
from streams.runtime.restore import ChangelogRestore

pytestmark = pytest.mark.broker


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    app = faust.App(f"restore-{uuid.uuid4().hex[:6]}", store="rocksdb://", datadir=str(tmp_path))
    table = app.Table("profiles", partitions=2, key_type=bytes, value_type=bytes)
    yield table.data


def restorer(broker: str, min_records: int = 1) -> tuple[ChangelogRestore, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return ChangelogRestore(partial(AIOKafkaConsumer, bootstrap_servers=broker), metrics,
                            min_records=min_records), metrics  # fmt: skip


async def changelog(broker: str, records: list[tuple[int, bytes, bytes | None]]) -> str:
    """A new two-partition topic holding ``records`` (partition, key, value; None
    a tombstone), in order."""
    topic = f"restore-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    await append(broker, topic, records)
    return topic


async def append(broker: str, topic: str, records: list[tuple[int, bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for partition, key, value in records:
            await producer.send(topic, value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def entries(store: Any, partition: int) -> dict[bytes, bytes]:
    db = store._db_for_partition(partition)
    return {k: v for k, v in db.items() if not k.startswith(b"__faust")}


def restored(metrics: Metrics) -> float:
    return metrics.changelog_restored.labels(table="profiles")._value.get()


def test_it_writes_the_latest_value_of_each_key_and_the_offset_reached(
    broker: str, store: Any
) -> None:
    records = [(n % 2, f"k{n}".encode(), f"v{n}".encode()) for n in range(3_000)]
    records += [(0, b"k0", b"again"), (1, b"k1", None), (0, b"k2", b"later")]
    topic = asyncio.run(changelog(broker, records))
    restore, metrics = restorer(broker)

    applied = asyncio.run(restore.run(store, topic, [0, 1]))

    assert applied == len(records) == restored(metrics)
    even = entries(store, 0)
    assert even[b"k0"] == b"again" and even[b"k2"] == b"later" and even[b"k4"] == b"v4"
    assert len(even) == 1_500
    odd = entries(store, 1)
    assert b"k1" not in odd and odd[b"k3"] == b"v3" and len(odd) == 1_499
    # Faust's recovery then starts after the end of each partition.
    assert store.persisted_offset(TP(topic, 0)) == 1_500 + 2 - 1
    assert store.persisted_offset(TP(topic, 1)) == 1_500 + 1 - 1


def test_a_second_restore_reads_only_what_came_after_the_first(broker: str, store: Any) -> None:
    topic = asyncio.run(changelog(broker, [(0, f"a{n}".encode(), b"1") for n in range(50)]))
    restore, metrics = restorer(broker)
    assert asyncio.run(restore.run(store, topic, [0, 1])) == 50

    asyncio.run(append(broker, topic, [(0, f"b{n}".encode(), b"2") for n in range(20)]))
    assert asyncio.run(restore.run(store, topic, [0, 1])) == 20
    assert restored(metrics) == 70
    assert len(entries(store, 0)) == 70
    assert store.persisted_offset(TP(topic, 0)) == 69


def test_a_partition_behind_by_fewer_records_than_the_threshold_is_left_to_faust(
    broker: str, store: Any
) -> None:
    topic = asyncio.run(changelog(broker, [(1, f"k{n}".encode(), b"v") for n in range(10)]))
    restore, metrics = restorer(broker, min_records=11)
    assert asyncio.run(restore.run(store, topic, [0, 1])) == 0
    assert restored(metrics) == 0
    assert entries(store, 1) == {}
    assert store.persisted_offset(TP(topic, 1)) is None


def test_a_broker_it_cannot_reach_leaves_the_partitions_to_faust(
    store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    restore, metrics = restorer("127.0.0.1:9")
    assert asyncio.run(restore.run(store, "nowhere", [0])) == 0
    assert restored(metrics) == 0
    assert store.persisted_offset(TP("nowhere", 0)) is None
    assert "restore of nowhere stopped after 0 records" in caplog.text
