"""Table reads and writes for a batch: one lookup per read, one store write per batch.

A Faust table sends one changelog message per assignment, each through
Faust's producer buffer, a FutureMessage and a delivery callback that also
writes the persisted offset into RocksDB; measured, that machinery was most
of the worker's CPU once per-event work was batched. :func:`write_batch`
does what a run of ``table[key] = value`` does, with the same bytes on the
same changelog partition, so Faust's recovery and standbys read it as their
own:

1. the values go into the table's store in the partition of the event being
   processed, as Faust's store picks it: on RocksDB as one write batch, the
   way Faust's own recovery writes them;
2. the values go to the changelog partition as aiokafka record batches;
3. once delivered, the persisted offset (where local state is up to, so a
   restart reads only the changelog after it) is set once, to the last
   record's offset.

The returned future resolves after step 3; the caller acks the input only
then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore
from faust.types import TP

# Faust's own entries in a partition's store (the persisted offset).
FAUST_KEYS = b"__faust"
# Fewer changes than this go as single records.
BATCH_FROM = 64


def read(table: Any, partition: int, key: bytes) -> bytes | None:
    """``table.get(key)`` for a key of ``partition``, in one store lookup.

    (``Mapping.get`` looks twice, contains then get, and Faust's store finds
    the partition again for each.)
    """
    store = table.data
    if isinstance(store, RocksDBStore):
        return store._db_for_partition(partition).get(key)
    return store.get(key)


def scan(
    table: Any,
    partition: int,
    after: bytes,
    limit: int,
    partition_of: Callable[[bytes], int],
    until: bytes | None = None,
) -> list[tuple[bytes, bytes]]:
    """Up to ``limit`` entries of ``partition`` with keys after ``after`` (and before
    ``until``), in key order.

    ``partition_of`` is the key's partition, for stores that keep every
    partition together (the in-memory store).
    """
    store = table.data
    entries: Iterable[tuple[bytes, bytes]]
    if isinstance(store, RocksDBStore):
        entries = store._db_for_partition(partition).items(from_key=after)
    else:
        entries = sorted((k, v) for k, v in store.data.items() if partition_of(k) == partition)
    found: list[tuple[bytes, bytes]] = []
    for key, value in entries:
        if until is not None and key >= until:
            break
        if key <= after or key.startswith(FAUST_KEYS):
            continue
        found.append((key, value))
        if len(found) == limit:
            break
    return found


async def write_batch(
    app: Any, table: Any, partition: int, changes: Sequence[tuple[bytes, bytes | None]]
) -> asyncio.Future[None]:
    """Write ``changes`` (key, value; None deletes) to ``table`` in ``partition``.

    Returns the delivery future. A deletion goes to the changelog as a
    tombstone, which recovery applies as a delete (and compaction drops).
    """
    store = table.data
    if isinstance(store, RocksDBStore):
        writes = rocksdict.WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                writes.delete(key)
            else:
                writes.put(key, value)
        store._db_for_partition(partition).write(writes)
    else:
        for key, value in changes:
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
    producer = app.producer._ensure_producer()  # the app's aiokafka producer
    topic = table.changelog_topic.get_topic_name()
    sent: list[tuple[asyncio.Future[Any], int]] = []
    if len(changes) < BATCH_FROM:
        # aiokafka lets a record batch in only once the partition's previous
        # batch has gone out, so a few records join the open batch instead.
        for key, value in changes:
            sent.append((await producer.send(topic, value, key=key, partition=partition), 1))
    else:
        batch = producer.create_batch()
        for key, value in changes:
            if batch.append(key=key, value=value, timestamp=None) is None:
                sent.append((await producer.send_batch(batch, topic, partition=partition),
                             batch.record_count()))  # fmt: skip
                batch = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    raise ValueError(
                        f"a {len(value or b'')}-byte value does not fit a record batch"
                    )
        if batch.record_count():
            sent.append((await producer.send_batch(batch, topic, partition=partition),
                         batch.record_count()))  # fmt: skip

    async def persisted() -> None:
        last = -1
        for delivery, count in sent:
            metadata = await delivery
            last = max(last, metadata.offset + count - 1)
        if last >= 0:
            store.set_persisted_offset(TP(topic, partition), last)

    return asyncio.ensure_future(persisted())
