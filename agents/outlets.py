"""Where a lane's offers go (agents/lanes.py), and how its commit goes with them.

With ``KAIROS_OFFERS_EXACTLY_ONCE`` (the default) each delivery is one Kafka
transaction: the offers, and the partition's new commit through
``send_offsets_to_transaction``, land together or not at all, so a
``read_committed`` consumer of kairos.offers sees each offer once. Turned
off, the same stage produces the offers with a plain idempotent producer
and commits afterwards, at-least-once: a worker taking a partition over
still skips the moments whose offers it finds on the topic (agents/lanes.py),
but a worker paused past its session that wakes up writes its offers in
hand again, unfenced. What the transactions cost is the difference
(``make bench``: the ``*_stand_in`` figures against ``*_stand_in_no_txn``).

Where it goes (``python -m bench.txn_latency``, and Kafka's request log in
the stand-in phase): a delivery is four round trips one after another,
AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn (the
produce goes beside the second and third), and the broker's markers then
answer the waiting read_committed fetch about 2 ms after EndTxn. Kafka
spends about 1 ms on each request (2-3 ms on the produce and on
TxnOffsetCommit, which it checks with the transaction coordinator, KIP-890);
the rest is the worker's. In the stand-in phase a delivery took 20 ms at
the median: its four requests 2-5 ms each as the worker saw them, the
worker's turns between them the rest; in a process doing nothing else,
7-9 ms. There is no wait to tune away: ``group.coordinator.append.linger.ms``
is adaptive (-1) in Kafka 4.4, the fetch is answered when the markers land,
not after ``fetch_max_wait_ms``. What ``retry_backoff_ms`` adds: besides
a burst (one lane's transactions back to back), Kafka fails the older of
two checks of one transactional id that wait at once (its
AddPartitionsToTxnManager), so the produce or TxnOffsetCommit, checked side
by side, is now and then retried. In a process doing nothing else that was
12-15 retries in 50 deliveries, p90 29-31 ms (13-16 ms with the offsets
sent after the acks); in the stand-in phase's slower worker the checks
seldom meet, and sending the offsets after the acks cost a round trip and
measured no better, so they stay side by side. Fewer round trips would
take transactions v2 (KIP-890 part 2: Produce v12 and TxnOffsetCommit v5
add their partitions themselves), which aiokafka 0.14 does not speak.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced

from agents.lanes import Committed, PartitionLost
from streams import clients
from streams.codecs import dumps
from streams.domain import Offer
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger(__name__)

# What Kafka answers a producer whose transactional id a newer one took.
FENCED = (ProducerFenced, InvalidProducerEpoch)
# How often the at-least-once outlet commits: off the offers' path, as ingest does.
COMMIT_EVERY_S = 0.5


def offers_producer(settings: Settings, **config: Any) -> AIOKafkaProducer:
    """A producer for kairos.offers: acks from every in-sync replica,
    idempotent, no linger (each offer is awaited by a person, and they are few)."""
    return clients.producer(
        settings,
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
        **config,
    )


async def _send(producer: AIOKafkaProducer, offers: list[Offer], name: str) -> list[Any]:
    return [await producer.send(name, dumps(o), key=o["user"].encode()) for o in offers]


class Transactional:
    """A partition's offers and commits, each delivery in one transaction.

    One producer per partition, its transactional id the partition's
    (``<app_id>-offers-<partition>``): the worker that takes the partition
    over starts a producer with the same id, and Kafka fences this one,
    aborting its open transaction. This is the pattern from before KIP-447;
    it asks nothing of the consumer group (aiokafka cannot fence by group
    metadata), only that the partition's producer start before its commit
    is read, which agents/delivery.py does.
    """

    def __init__(
        self, producer: AIOKafkaProducer, group_id: str, topic: str, metrics: Metrics
    ) -> None:
        self.producer = producer
        self.group_id = group_id
        self.topic = topic
        self.metrics = metrics

    @classmethod
    async def open(
        cls, settings: Settings, metrics: Metrics, partition: int, group_id: str
    ) -> Transactional:
        """Start the partition's producer. Its InitProducerId fences the
        previous owner and returns once that owner's transaction has ended.

        A transaction begun while the previous one's markers are still being
        written is answered CONCURRENT_TRANSACTIONS (and its produce, at
        aiokafka's protocol versions, NOT_ENOUGH_REPLICAS), both retried after
        ``retry_backoff_ms``: on Kafka 4.4, 20 ms instead of the default 100
        brought the slowest of 30 transactions a few hundred ms apart from
        121 ms to 34 ms.
        """
        name = f"{settings.app_id}-offers-{partition}"
        producer = offers_producer(
            settings, client_id=name, transactional_id=name, retry_backoff_ms=20
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return cls(producer, group_id, settings.topics.offers, metrics)

    async def deliver(self, tp: TopicPartition, offers: list[Offer], committed: Committed) -> None:
        """Offers and commit in one transaction; PartitionLost if fenced."""
        producer = self.producer
        try:
            async with producer.transaction():
                sends = await _send(producer, offers, self.topic)
                commit = producer.send_offsets_to_transaction(
                    {tp: committed.as_commit()}, self.group_id
                )
                # A failed send must abort the transaction, not be committed without it.
                await asyncio.gather(*sends, commit)
        except FENCED as exc:
            self.metrics.offer_transactions.labels("fenced").inc()
            raise PartitionLost(repr(exc)) from exc
        except BaseException:
            self.metrics.offer_transactions.labels("aborted").inc()
            raise
        self.metrics.offer_transactions.labels("committed").inc()

    async def close(self) -> None:
        await self.producer.stop()


class AtLeastOnce:
    """A partition's offers produced by the stage's shared idempotent
    producer, its commit sent every ``COMMIT_EVERY_S`` after them. A crash in
    between writes the offers since the last commit again."""

    def __init__(self, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, topic: str) -> None:
        self.producer = producer
        self.consumer = consumer
        self.topic = topic
        self._latest: tuple[TopicPartition, Committed] | None = None
        self._later: asyncio.Task[None] | None = None

    async def deliver(self, tp: TopicPartition, offers: list[Offer], committed: Committed) -> None:
        await asyncio.gather(*await _send(self.producer, offers, self.topic))
        self._latest = (tp, committed)
        if self._later is None or self._later.done():
            self._later = asyncio.create_task(self._commit_later())

    async def close(self) -> None:
        if self._later is not None and not self._later.done():
            self._later.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._later
        await self._commit()

    async def _commit_later(self) -> None:
        await asyncio.sleep(COMMIT_EVERY_S)
        await self._commit()

    async def _commit(self) -> None:
        if self._latest is None:
            return
        (tp, committed), self._latest = self._latest, None
        try:
            await self.consumer.commit({tp: committed.as_commit()})
        except KafkaError as exc:
            # At-least-once: whoever reads the partition next writes these offers again.
            log.warning("offers: commit of %s not sent: %r", tp, exc)
