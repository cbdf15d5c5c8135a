"""A table's partitions rebuilt from the changelog in bulk, before Faust's recovery.

Faust 0.15.3's recovery hands the changelog to the table one record at a
time: through the app consumer's conductor, a task and an
``asyncio.wait_for`` on its queue per record. Measured, a worker whose disk
was deleted took 53.75 s to rebuild 100,000 profiles (97 MiB of
changelog) that way. :class:`RestoringTable` reads the changelog itself
first, for each partition it is newly assigned that lags the changelog by
:data:`MIN_RECORDS` or more (a deleted disk, a partition this worker has not
held, a long stop):

- one consumer of its own, outside the group, fetching up to
  :data:`FETCH_BYTES` per partition at a time;
- each fetch written to the partition's RocksDB as one write batch, with
  Faust's persisted offset in the same batch, so the partition and its
  offset never disagree, and a restore cut short (a crash, a broker error)
  is carried on from where it got to, by the next one or by Faust;
- read to the end offset the partition had when it began.

Faust's recovery runs after it, as always: it finds the partitions at
their persisted offsets and reads only what was written meanwhile (nothing,
while this worker holds them). Tombstones delete, as in Faust's recovery.

It runs inside the rebalance, as Faust's store opens its partitions there:
the worker is not ready, and its stages fold nothing, until it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

from streams.metrics import Metrics

log = logging.getLogger(__name__)

# Below this lag Faust's recovery is as quick as starting a consumer.
MIN_RECORDS = 1_000
# Per partition per fetch: a few thousand profiles, one write batch each.
FETCH_BYTES = 8 * 2**20
# Records taken from the consumer at once.
MAX_RECORDS = 20_000
# Seconds without a record, short of the end offsets, before it leaves the rest.
IDLE_S = 10


@dataclass(frozen=True)
class Span:
    """The part of one changelog partition to read: ``start`` up to ``end``."""

    partition: int
    start: int
    end: int

    @property
    def records(self) -> int:
        return self.end - self.start


def spans(
    persisted: Mapping[int, int | None],
    beginnings: Mapping[int, int],
    ends: Mapping[int, int],
    min_records: int = MIN_RECORDS,
) -> list[Span]:
    """The partitions worth restoring: from the record after the persisted
    offset (or the log's start, if compaction or retention moved it past it)
    to the end offset, where that is ``min_records`` or more."""
    out = []
    for partition, last in persisted.items():
        start = max(-1 if last is None else last, beginnings[partition] - 1) + 1
        span = Span(partition, start, ends[partition])
        if span.records >= min_records:
            out.append(span)
    return out


class ChangelogRestore:
    """Restores partitions of one table's changelog into its RocksDB partitions.

    ``consumer`` builds an unstarted consumer with the worker's connection
    (streams/clients.py) and the options given.
    """

    def __init__(
        self,
        consumer: Callable[..., AIOKafkaConsumer],
        metrics: Metrics,
        min_records: int = MIN_RECORDS,
    ) -> None:
        self.consumer = consumer
        self.metrics = metrics
        self.min_records = min_records

    async def run(self, store: RocksDBStore, topic: str, partitions: Iterable[int]) -> int:
        """Restore ``partitions`` of ``topic`` into ``store``; records applied.

        A broker error ends it early, logged: what was written stands, with
        its offset, and Faust's recovery reads the rest.
        """
        consumer = self.consumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=4 * FETCH_BYTES,
            client_id=f"{topic}-restore",
        )
        applied = 0
        started = time.monotonic()
        try:
            await consumer.start()
            todo = await self._spans(consumer, store, topic, sorted(partitions))
            if todo:
                applied = await self._read(consumer, store, topic, todo)
        except KafkaError as exc:
            log.warning("restore of %s stopped after %d records: %r", topic, applied, exc)
        finally:
            await consumer.stop()
        if applied:
            log.info("restored %d records of %s in %.1f s", applied, topic,
                     time.monotonic() - started)  # fmt: skip
        return applied

    async def _spans(
        self, consumer: AIOKafkaConsumer, store: RocksDBStore, topic: str, partitions: list[int]
    ) -> list[Span]:
        tps = [TopicPartition(topic, p) for p in partitions]
        beginnings = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        persisted = {p: store.persisted_offset(TP(topic, p)) for p in partitions}
        return spans(persisted, {tp.partition: o for tp, o in beginnings.items()},
                     {tp.partition: o for tp, o in ends.items()}, self.min_records)  # fmt: skip

    async def _read(
        self, consumer: AIOKafkaConsumer, store: RocksDBStore, topic: str, todo: list[Span]
    ) -> int:
        ends = {TopicPartition(topic, s.partition): s.end for s in todo}
        consumer.assign(list(ends))
        for span in todo:
            consumer.seek(TopicPartition(topic, span.partition), span.start)
        applied, idle_since = 0, time.monotonic()
        while ends:
            fetched = await consumer.getmany(*ends, timeout_ms=1_000, max_records=MAX_RECORDS)
            for tp, records in fetched.items():
                applied += self._write(store, tp.partition, records, ends[tp])
            if fetched:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_S:
                # Records below the end offset that no fetch returns: Faust reads on.
                log.warning("restore of %s: no records for %d s, %s left to Faust's recovery",
                            topic, IDLE_S, sorted(tp.partition for tp in ends))  # fmt: skip
                break
            for tp in list(ends):
                if await consumer.position(tp) >= ends[tp]:
                    store.set_persisted_offset(TP(topic, tp.partition), ends[tp] - 1)
                    del ends[tp]
                    consumer.pause(tp)
        return applied

    def _write(self, store: RocksDBStore, partition: int, records: list[Any], end: int) -> int:
        """One write batch: the records before ``end`` and the offset reached."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        last, count = -1, 0
        for record in records:
            if record.offset >= end:
                break
            if record.value is None:
                batch.delete(record.key)
            else:
                batch.put(record.key, record.value)
            last, count = record.offset, count + 1
        if not count:
            return 0
        batch.put(store.offset_key, str(last).encode())
        store._db_for_partition(partition).write(batch)
        self.metrics.changelog_restored.labels(table=store.table_name).inc(count)
        return count


class RestoringTable(faust.Table):
    """A Faust table that restores newly assigned partitions with
    :class:`ChangelogRestore` (RocksDB stores only; the in-memory store has
    nothing on disk to rebuild and keeps Faust's recovery)."""

    def __init__(self, *args: Any, restore: ChangelogRestore, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.restore = restore

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP], generation_id: int = 0
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        store = self.data
        if not isinstance(store, RocksDBStore):
            return
        topic = self.changelog_topic.get_topic_name()
        standbys = self.app.assignor.assigned_standbys()
        mine = {
            tp.partition
            for tp in newly_assigned
            if tp.topic == topic and tp not in standbys and tp.partition in store._dbs
        }
        if mine:
            await self.restore.run(store, topic, mine)
