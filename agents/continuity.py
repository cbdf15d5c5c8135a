"""Records of kairos.internal.events the stream consumer skipped, read again.

Only idempotent, non-transactional producers write the internal events
topic, so a partition's offsets are contiguous: the record after offset N
is N + 1. The context agent therefore knows, per partition, which offset it
should be handed next, and a record further on means the ones between were
never handed to it.

That happens: faust-streaming 0.15.3, in the rebalance that follows a broker
outage, can discard records it has already taken from aiokafka and then
deliver the ones after them, counting the hole as a gap it may commit past.
A worker then never folds those bundles, and once the gap is committed no
restart reads them either (tests/integration/test_durability.py saw whole
bundles produced between the revoke and the seek go missing). So the agent
reads a skipped range itself, and folds it before the record that showed it.

Folding a record twice is harmless (events are dropped by id), but a range
another worker already handled would be read for nothing, so an expectation
is kept only while this worker owns the partition without a break: from one
assignment to the next, and forgotten when a generation passes without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

# How long reading a skipped range may take before the agent gives up on it
# (and crashes the worker, whose restart reads from the last commit).
READ_TIMEOUT_S = 60.0


class SkippedRecords(RuntimeError):
    """A skipped range of the internal events could not be read back."""


class Continuity:
    """Per partition, the offset the agent should be handed next."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}
        self._owned: set[int] = set()

    def assigned(self, partitions: Iterable[int]) -> None:
        """A new generation's partitions: keep what was expected of those owned before too."""
        now = set(partitions)
        kept = now & self._owned
        self._next = {p: offset for p, offset in self._next.items() if p in kept}
        self._owned = now

    def skipped(self, partition: int, offset: int) -> range:
        """The offsets before ``offset`` that were never handed over (empty if none)."""
        expected = self._next.get(partition)
        self._next[partition] = offset + 1
        if expected is None or offset <= expected:
            return range(0)  # the first record, the next one, or one read again
        return range(expected, offset)


async def read_range(
    new_consumer: Callable[[], AIOKafkaConsumer], tp: TopicPartition, offsets: range
) -> list[Any]:
    """The records of ``tp`` at ``offsets``, in order, read with a consumer of their own.

    Fewer if retention has already deleted some; raises SkippedRecords if the
    broker does not answer within READ_TIMEOUT_S.
    """
    consumer = new_consumer()
    await consumer.start()
    try:
        return await asyncio.wait_for(_read(consumer, tp, offsets), READ_TIMEOUT_S)
    except TimeoutError:
        raise SkippedRecords(
            f"offsets {offsets.start}-{offsets.stop - 1} of {tp.topic}/{tp.partition} "
            f"were skipped by the consumer and could not be read back in {READ_TIMEOUT_S:.0f} s"
        ) from None
    finally:
        await consumer.stop()


async def _read(consumer: AIOKafkaConsumer, tp: TopicPartition, offsets: range) -> list[Any]:
    consumer.assign([tp])
    first = (await consumer.beginning_offsets([tp]))[tp]
    consumer.seek(tp, max(offsets.start, first))
    found: list[Any] = []
    while await consumer.position(tp) < offsets.stop:
        batch = await consumer.getmany(tp, timeout_ms=500)
        found += [r for r in batch.get(tp, ()) if r.offset in offsets]
    return found
