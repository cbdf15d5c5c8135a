"""The offers stage: moments in, each moment's offer on kairos.offers once.

The stage reads kairos.internal.moments with a consumer of its own (group
``<app_id>-offers``, no auto-commit), not through Faust's: Faust commits its
consumer's offsets on its own schedule, and those commits, mixed with the
transactional ones for the same partitions, could move a partition's offset
back, or past an offer not yet committed. Here offsets are committed only
with the offers, in the lanes' transactions (agents/lanes.py,
agents/outlets.py), one lane per partition this worker owns.

Up to ``window`` moments are in hand at once (twice ``llm_max_in_flight``,
so vLLM always has the next requests to batch), across the partitions.

Rebalances are eager: every worker gives its partitions up before any is
assigned again. On revocation each lane finishes the delivery under way and
stops; its generations still running are parked with the early starts
(agents/handoffs.py), so a partition that comes back to this worker claims
them when it reads the moments again, and the rest are cancelled once the
assignment is known. On assignment, for each partition, in this order: the
lane's producer starts (fencing the previous owner and waiting for its open
transaction to end), then the partition's commit is read, then the
consumer seeks there. Read after that, the commit is final. Then the
offers committed in the last ``RECENT_S`` are read, for the moment ids the
new lanes know already (agents/lanes.py: a moment on the topic twice gets
one offer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Iterable
from functools import partial
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from agents.handoffs import drop
from agents.lanes import Committed, Item, Lane, Outlet
from agents.moment_types import stale
from agents.offers import OfferWriter, llm_client
from agents.outlets import AtLeastOnce, Transactional, offers_producer
from agents.runtime import Runtime
from models.client import LLMClient
from streams.codecs import loads, now_ms
from streams.keys import Partitioner
from streams.runtime.admin import partitions_of

log = logging.getLogger(__name__)

# Bounds a commit's list of moments delivered out of order (lanes.Committed).
MAX_WINDOW = 256
PROGRESS_ATTEMPTS = 5
# How far back a worker taking partitions over reads the offers committed, for
# the moments that already have one: the two copies of a moment written twice
# upstream are at most this far apart (a restart replays seconds; a paused
# worker writes when it wakes, after its session has expired).
RECENT_S = 600.0
RECENT_READ_TIMEOUT_S = 120.0


class OfferDelivery(mode.Service):
    """The moments consumer and its lanes, started with the worker."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.writer = OfferWriter(rt.settings, rt.rules, rt.reference, rt.metrics)
        super().__init__()

    def __post_init__(self) -> None:
        settings = self.rt.settings
        self.group_id = f"{settings.app_id}-offers"
        self.topic = self.rt.topics.moments.get_topic_name()
        self.window = min(2 * settings.llm_max_in_flight, MAX_WINDOW)
        self.room = asyncio.Semaphore(self.window)
        self.lanes: dict[TopicPartition, Lane] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.history: AIOKafkaConsumer | None = None  # reads the offers committed lately
        self.admin: AIOKafkaAdminClient | None = None
        self.shared: Any = None  # the at-least-once outlets' producer
        self.client: LLMClient | None = None
        self.assigned = False
        self.rt.ready_checks.append(lambda: self.assigned)

    async def on_start(self) -> None:
        settings = self.rt.settings
        self.client = llm_client(settings, self.rt.metrics)
        self.admin = self.rt.clients.admin(client_id=f"{settings.app_id}-offers")
        await self.admin.start()
        if not settings.offers_exactly_once:
            self.shared = offers_producer(settings, client_id=f"{settings.app_id}-offers")
            await self.shared.start()
        self.consumer = self.rt.clients.consumer(
            group_id=self.group_id,
            client_id=f"{settings.app_id}-offers",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.consumer_fetch_wait_ms,
            session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.broker_heartbeat_interval_s * 1000),
        )
        self.history = self.rt.clients.consumer(
            group_id=None,
            client_id=f"{settings.app_id}-offers-history",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await self.history.start()
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        self.rt.early.open(partial(self.writer.generate, self.client), self.owns)

    async def on_stop(self) -> None:
        early = self.rt.early
        early.close()
        try:
            await self.release(list(self.lanes))
        except Exception:
            log.exception("offers: the deliveries under way did not finish")
        early.forget()
        for consumer in (self.consumer, self.history):
            if consumer is not None:
                await consumer.stop()
        if self.shared is not None:
            await self.shared.stop()
        if self.admin is not None:
            await self.admin.close()
        if self.client is not None:
            await self.client.aclose()

    def owns(self, partition: int) -> bool:
        """Whether this worker delivers the offers of ``partition`` now."""
        lane = self.lanes.get(TopicPartition(self.topic, partition))
        return lane is not None and lane.open

    @mode.Service.task
    async def _run(self) -> None:
        assert self.consumer is not None
        try:
            while not self.should_stop:
                batch = await self.consumer.getmany(timeout_ms=500, max_records=self.window)
                for records in batch.values():
                    for record in records:
                        await self.take(record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.should_stop:
                return  # the consumer was stopped under us: a normal shutdown
            await self.rt.dead_letters.crash_worker(exc)

    async def take(self, record: Any) -> None:
        """Hand ``record`` to its lane, waiting for room in the window; drop it
        if no lane here wants it (not this worker's, or read again after a seek)."""
        tp = TopicPartition(record.topic, record.partition)
        lane = self.lanes.get(tp)
        if lane is None or not lane.wants(record.offset):
            return
        await self.room.acquire()
        if self.lanes.get(tp) is not lane or not lane.wants(record.offset):
            self.room.release()  # the partition was revoked while this waited
            return
        lane.add(self.item_for(record, lane))

    def item_for(self, record: Any, lane: Lane) -> Item:
        """The moment at ``record`` and its generation: claimed from the early
        starts, or started now."""
        if lane.delivered_earlier(record.offset):
            return Item(record)
        try:
            moment = loads(record.value)
            moment_id = moment["id"]
        except Exception as exc:  # a bug must not lose the moment
            log.exception("unreadable moment at %s/%s", record.topic, record.offset)
            return Item(record, problem=f"offer failed: {exc!r}")
        early = self.rt.early
        if lane.knows(moment_id):  # on the topic twice: the first copy has the offer
            if (started := early.claim(moment_id)) is not None:
                drop(started)
            return Item(record, moment_id, note="duplicate")
        if moment.get("suppressed"):  # recorded, no offer: a holdout, quiet hours, a cap
            return Item(record, moment_id, note="suppressed")
        if stale(moment, now_ms()):  # read late (a backlog here): too old to send
            if (started := early.claim(moment_id)) is not None:
                drop(started)
            self.rt.metrics.moments_suppressed.labels(moment["type"], "stale").inc()
            return Item(record, moment_id, note="stale")
        generation = early.claim(moment_id)
        if generation is None:
            assert self.client is not None
            self.rt.metrics.offer_starts.labels("topic").inc()
            generation = asyncio.ensure_future(self.writer.generate(self.client, moment))
        return Item(record, moment_id, generation)

    async def release(self, tps: Iterable[TopicPartition]) -> None:
        """Close the lanes of ``tps``; park their generations still running."""
        lanes = [self.lanes.pop(tp) for tp in tps if tp in self.lanes]
        self.rt.metrics.offer_partitions.set(len(self.lanes))
        for lane, left in zip(lanes, await asyncio.gather(*(lane.close() for lane in lanes)),
                              strict=True):  # fmt: skip
            for item in left:
                if item.generation is not None and item.moment_id is not None:
                    self.rt.early.park(item.moment_id, item.generation, lane.tp.partition)

    async def take_over(self, tps: set[TopicPartition]) -> None:
        """Open a lane for each of ``tps``: producer first, then the commit, then the seek."""
        assert self.consumer is not None
        ordered = sorted(tps)
        outlets = await asyncio.gather(*(self.outlet(tp) for tp in ordered))
        progress = await self.progress(ordered)
        recent = await self.recent_offers({tp.partition for tp in ordered})
        for tp, outlet in zip(ordered, outlets, strict=True):
            self.consumer.seek(tp, progress[tp].offset)
            self.lanes[tp] = self.lane(tp, outlet, progress[tp], recent[tp.partition])
        self.rt.early.forget()  # parked generations of partitions that went elsewhere
        self.assigned = bool(tps)
        self.rt.metrics.offer_partitions.set(len(self.lanes))

    def lane(self, tp: TopicPartition, outlet: Outlet, committed: Committed,
             recent: set[str]) -> Lane:  # fmt: skip
        rt = self.rt
        return Lane(tp, outlet, committed, self.room.release, rt.dead_letters.crash_worker,
                    recent, dead_letters=rt.dead_letters, metrics=rt.metrics)  # fmt: skip

    async def outlet(self, tp: TopicPartition) -> Outlet:
        settings = self.rt.settings
        if settings.offers_exactly_once:
            return await Transactional.open(settings, self.rt.metrics, tp.partition, self.group_id)
        assert self.consumer is not None
        return AtLeastOnce(self.shared, self.consumer, settings.topics.offers)

    async def progress(self, tps: list[TopicPartition]) -> dict[TopicPartition, Committed]:
        """Each partition's commit; the partition's first offset where there is none."""
        assert self.consumer is not None
        found = await self.commits(tps)
        committed = {tp: Committed.read(c.offset, c.metadata or "") for tp, c in found.items()
                     if c.offset >= 0}  # fmt: skip
        missing = [tp for tp in tps if tp not in committed]
        if missing:
            first = await self.consumer.beginning_offsets(missing)
            committed.update({tp: Committed(first[tp]) for tp in missing})
        return committed

    async def recent_offers(self, partitions: set[int]) -> dict[int, set[str]]:
        """The moment ids of the offers committed in the last ``RECENT_S``, by
        moments partition, for ``partitions`` of kairos.internal.moments.

        Both topics are keyed by user with one partition count, so a moment's
        offer is on the partition of the same number; only those are read
        (all of them, if the counts differ).
        """
        assert self.history is not None
        settings = self.rt.settings
        consumer, name = self.history, settings.topics.offers
        found = await partitions_of(consumer, name)
        if len(found) == settings.partitions:
            found &= partitions
        tps = [TopicPartition(name, p) for p in sorted(found)]
        ids: defaultdict[int, set[str]] = defaultdict(set)
        if not tps:
            return ids
        consumer.assign(tps)
        try:
            since = now_ms() - int(RECENT_S * 1000)
            starts = await consumer.offsets_for_times({tp: since for tp in tps})
            ends = await consumer.end_offsets(tps)  # read_committed: the last stable offsets
            for tp in tps:
                consumer.seek(tp, starts[tp].offset if starts[tp] is not None else ends[tp])
            await _read_until(consumer, ends, ids, Partitioner(settings.partitions))
        finally:
            consumer.unsubscribe()  # nothing to fetch until the next assignment
        return ids

    async def commits(self, tps: list[TopicPartition]) -> dict[TopicPartition, Any]:
        """The group's commits (offset and metadata) for ``tps``, retrying
        what the coordinator may answer just after a rebalance."""
        assert self.admin is not None
        for attempt in range(PROGRESS_ATTEMPTS - 1):
            try:
                return await self.admin.list_consumer_group_offsets(self.group_id, partitions=tps)
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                await asyncio.sleep(0.2 * 2**attempt)
        return await self.admin.list_consumer_group_offsets(self.group_id, partitions=tps)


async def _read_until(
    consumer: AIOKafkaConsumer,
    ends: dict[TopicPartition, int],
    ids: defaultdict[int, set[str]],
    partition_for: Partitioner,
) -> None:
    """Read offers up to ``ends``, filing each one's moment id under its partition."""
    deadline = time.monotonic() + RECENT_READ_TIMEOUT_S
    while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the offers of the last {RECENT_S:g} s took too long to read")
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                try:
                    offer = loads(record.value)
                    ids[partition_for(offer["user"])].add(offer["moment"]["id"])
                except (ValueError, KeyError, TypeError):
                    log.warning("offers: unreadable offer at %s/%s", record.partition,
                                record.offset)  # fmt: skip


class _Rebalance(ConsumerRebalanceListener):
    """Lanes closed before partitions move, opened once they have.

    aiokafka logs an exception raised here and carries on, which would leave
    a partition without its lane: a failure stops the worker instead.
    """

    def __init__(self, stage: OfferDelivery) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._or_crash(self.stage.release(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._or_crash(self.stage.take_over(set(assigned)))

    async def _or_crash(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:
            await self.stage.rt.dead_letters.crash_worker(exc)


def install(rt: Runtime) -> OfferDelivery:
    """Register the offers stage with ``rt.app``."""
    stage = OfferDelivery(rt)
    rt.app.service(stage)
    return stage
