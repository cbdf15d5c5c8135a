"""Ingest: source topics in, normalized events out, bundled by profile partition.

The hot path works on batches, not on messages. One consumer (its own group,
``<app_id>-ingest``) takes up to ``ingest_batch_max`` records at a time from
every source topic. Each record is decoded and validated; an invalid one goes
to the dead-letter topic with its original bytes and a reason. A valid event
is keyed by profile id (userId, else anonymousId), and the batch's events
are sent to kairos.internal.events as one *bundle* per partition (a JSON
array; streams/runtime/bundles.py), so the context agent, Faust's
per-message machinery and the broker see a handful of messages per batch
instead of one per event. A bundle for a partition this worker's context
agent owns is folded into the profiles here, before it is produced
(agents/context.py, through the hand-off ``InProcess`` of agents/handoffs.py):
the agent then skips it, and the event reaches its profile without a trip
through the broker. A batch's offsets are committed only once every bundle,
its folded work and every dead letter of it is delivered, and at most every
``COMMIT_EVERY_S``
(at-least-once; the context agent drops redelivered events by id).

Identity links are found here: an event that carries both anonymousId and
userId, or an alias call, adds a ``merge`` event to the bundle of the
partition where the older id lives (agents/fold.py does the merge).

The stage keeps no state but a bounded cache of links already sent, so it
needs no table, and a rebalance only waits for the batch in hand.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError

from agents.handoffs import Placed
from agents.runtime import Runtime
from streams.codecs import dumps, now_ms
from streams.errors import InvalidEvent
from streams.events import SCHEMA_VERSION, decode
from streams.keys import Partitioner
from streams.runtime.bundles import MAX_BUNDLE_BYTES, bundles

log = logging.getLogger(__name__)

# Batches whose output may be in flight before the oldest is committed.
MAX_PENDING = 4
# How often the offsets of batches whose output landed are committed.
COMMIT_EVERY_S = 0.5
LINKS_REMEMBERED = 100_000


class Routed:
    """One batch, decided: bundles per partition, dead letters, counts."""

    def __init__(self) -> None:
        self.bundles: defaultdict[int, list[bytes]] = defaultdict(list)
        self.dead: list[tuple[Any, str, str]] = []
        self.counts: Counter[tuple[str, str]] = Counter()
        self.offsets: dict[TopicPartition, int] = {}


class Router:
    """Decide where each record of a batch goes. Pure apart from the link cache."""

    def __init__(
        self,
        sources: dict[str, str],
        partitions: int,
        max_future_ms: int | None = None,
        event_limit: int = MAX_BUNDLE_BYTES,
    ) -> None:
        self.sources = sources  # topic name -> decoder name
        # A normalized event is larger than its record when numbers are
        # respelled (1e15 is 1000000000000000.0); one larger than a bundle
        # could not travel between stages.
        self.event_limit = event_limit
        self.partition_for = Partitioner(partitions)
        self.max_future_ms = max_future_ms  # None: every event time is believed
        self._links: set[tuple[str, str]] = set()

    def route(self, batch: dict[TopicPartition, list[Any]], arrived: int | None = None) -> Routed:
        """The batch's bundles and dead letters; ``arrived`` is its arrival time (now)."""
        routed = Routed()
        arrived = now_ms() if arrived is None else arrived
        bundles, partition_for = routed.bundles, self.partition_for
        for tp, records in batch.items():
            source = self.sources[tp.topic]
            for record in records:
                try:
                    event = decode(source, record.value, record.timestamp)
                except InvalidEvent as exc:
                    routed.dead.append((record, exc.code, exc.reason))
                    continue
                except Exception as exc:  # a bug must not lose the record
                    log.exception("ingest failed on %s/%s", record.topic, record.offset)
                    routed.dead.append((record, "internal_error", f"ingest failed: {exc!r}"))
                    continue
                if not event["id"]:
                    # Deterministic, so a redelivered record gets the same id.
                    event["id"] = f"{record.topic}/{record.partition}/{record.offset}"
                event["at"] = arrived
                self._believed(event, arrived)
                encoded = dumps(event)
                if len(encoded) > self.event_limit:
                    routed.dead.append((record, "too_large", _too_large(len(encoded), self)))
                    continue
                routed.counts[source, event["kind"]] += 1
                bundles[partition_for(event["user"])].append(encoded)
                link = self._new_link(event)
                if link is not None:
                    bundles[partition_for(link["user"])].append(dumps(link))
            if records:
                routed.offsets[tp] = records[-1].offset + 1
        return routed

    def _believed(self, event: dict[str, Any], arrived: int) -> None:
        """Take an event stamped more than ``max_future_ms`` after its arrival at
        its arrival time: nothing happens after it is sent, so its clock is
        wrong, and believed it would move traits, carts, timers and the
        watermark ahead of every true event. ``ahead_ms`` keeps by how much."""
        ahead = event["ts"] - arrived
        if self.max_future_ms is not None and ahead > self.max_future_ms:
            event["ts"], event["ahead_ms"] = arrived, ahead

    def _new_link(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """A merge event if ``event`` ties an older id to its user for the first time."""
        older = event.get("previous") or event.get("anon")
        if not older or older == event["user"]:
            return None
        pair = (older, event["user"])
        if pair in self._links:
            return None
        if len(self._links) >= LINKS_REMEMBERED:
            self._links.clear()  # merges are idempotent; forgetting costs one resend
        self._links.add(pair)
        return {
            "v": SCHEMA_VERSION,
            "id": f"merge:{older}:{event['user']}",
            "kind": "merge",
            "user": older,
            "into": event["user"],
            "ts": event["ts"],
            "at": event["at"],
        }


def _too_large(size: int, router: Router) -> str:
    return (
        f"normalized, the event is {size} bytes; an event between stages "
        f"carries at most {router.event_limit}"
    )


FoldNow = Callable[
    [int, bytes], Awaitable[tuple[list[tuple[str, bytes]], Placed, Awaitable[Any]] | None]
]


class Ingest(mode.Service):
    """The batch consumer of the source topics, started with the worker.

    ``fold_now`` is the context stage's in-process fold: a bundle it takes
    is produced with the headers it returns.
    """

    def __init__(self, rt: Runtime, fold_now: FoldNow) -> None:
        self.rt, self.fold_now = rt, fold_now
        super().__init__()

    def __post_init__(self) -> None:
        settings = self.rt.settings
        names = settings.topics
        self.router = Router(
            {names.clickstream: "clickstream", names.crm: "crm",
             names.location: "location", names.feedback: "feedback"},
            settings.partitions,
            int(settings.max_future_s * 1000),
        )  # fmt: skip
        self.consumer: AIOKafkaConsumer | None = None
        self.pending: deque[tuple[list[Any], dict[TopicPartition, int]]] = deque()
        self.landed: dict[TopicPartition, int] = {}  # output delivered, not yet committed
        self.committed_at = 0.0
        self.lock = asyncio.Lock()
        self.assigned = False
        self.rt.ready_checks.append(lambda: self.assigned)

    async def on_start(self) -> None:
        settings = self.rt.settings
        self.consumer = self.rt.clients.consumer(
            group_id=f"{settings.app_id}-ingest",
            client_id=f"{settings.app_id}-ingest",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.consumer_fetch_wait_ms,
            max_partition_fetch_bytes=1024 * 1024,
            session_timeout_ms=int(settings.broker_session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.broker_heartbeat_interval_s * 1000),
        )
        await self.consumer.start()
        self.consumer.subscribe(list(self.router.sources), listener=_Rebalance(self))

    async def on_stop(self) -> None:
        if self.consumer is not None:
            try:
                async with self.lock:
                    await self.drain()
            except Exception:
                log.exception("ingest: output of the last batches was not delivered")
            await self.consumer.stop()

    @mode.Service.task
    async def _run(self) -> None:
        assert self.consumer is not None
        try:
            while not self.should_stop:
                batch = await self.consumer.getmany(
                    timeout_ms=500, max_records=self.rt.settings.ingest_batch_max
                )
                await self.report_lag()
                async with self.lock:
                    if batch:
                        self.pending.append(await self.send(self.router.route(batch)))
                        await self.commit_done(keep=MAX_PENDING)
                    else:
                        await self.drain()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.should_stop:
                return  # the consumer was stopped under us: a normal shutdown
            # Output was lost or the consumer broke: stop before anything after it commits.
            log.critical("stopping the worker: ingest failed: %r", exc)
            await self.rt.app.crash(exc)

    async def report_lag(self) -> None:
        """Records between each partition's end (as of its last fetch) and our position."""
        assert self.consumer is not None
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is not None:
                lag = max(0, end - await self.consumer.position(tp))
                self.rt.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def send(self, routed: Routed) -> tuple[list[Any], dict[TopicPartition, int]]:
        """Hand the batch's output to the producer; its delivery futures and the offsets."""
        rt = self.rt
        producer = rt.app.producer
        deliveries: list[Any] = []
        events_topic = rt.topics.events.get_topic_name()
        for partition, encoded in routed.bundles.items():
            for bundle in bundles(encoded):
                folded = await self.fold_now(partition, bundle)
                headers = folded[0] if folded else None
                delivery = await producer.send(events_topic, None, bundle, partition, None, headers)
                deliveries.append(delivery)
                if folded:
                    _, placed, work = folded
                    placed.follow(delivery)
                    deliveries.append(work)
        for record, code, reason in routed.dead:
            dead = await rt.dead_letters.send(record, code=code, reason=reason, stage="ingest")
            deliveries.append(dead)
        for (source, kind), count in routed.counts.items():
            rt.metrics.events_in.labels(source, kind).inc(count)
        rt.metrics.ingest_batches.observe(sum(routed.counts.values()) + len(routed.dead))
        return deliveries, routed.offsets

    async def commit_done(self, keep: int, every_s: float = COMMIT_EVERY_S) -> None:
        """Take batches whose output landed, oldest first, waiting while more
        than ``keep`` are in flight; commit their offsets once ``every_s`` has
        passed since the last commit.

        A commit is a round trip to the broker, and this loop is the one that
        fetches: committing after every batch put that round trip on every
        event's path. Offsets taken but not yet committed are at most
        ``every_s`` of records, read again after a crash and dropped by the
        context agent as duplicates.
        """
        while self.pending:
            futures, offsets = self.pending[0]
            if len(self.pending) <= keep and not all(f.done() for f in futures):
                break
            await asyncio.gather(*futures)
            self.pending.popleft()
            self.landed.update(offsets)
        now = asyncio.get_running_loop().time()
        if self.landed and now - self.committed_at >= every_s:
            assert self.consumer is not None
            offsets, self.landed = self.landed, {}
            self.committed_at = now
            try:
                await self.consumer.commit(offsets)
            except CommitFailedError as exc:
                # The group moved on (a rebalance); the new owner reads these
                # records again and the context agent drops them as duplicates.
                log.warning("ingest: offsets not committed, the group rebalanced: %s", exc)

    async def drain(self) -> None:
        await self.commit_done(keep=0, every_s=0)


class _Rebalance(ConsumerRebalanceListener):
    """Finish and commit the batches in hand before partitions move."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def on_partitions_revoked(self, revoked: Any) -> None:
        async with self.ingest.lock:
            await self.ingest.drain()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.ingest.assigned = bool(assigned)


def install(rt: Runtime, fold_now: FoldNow) -> Ingest:
    """Register the ingest consumer with ``rt.app``, folding with ``fold_now``."""
    ingest = Ingest(rt, fold_now)
    rt.app.service(ingest)
    return ingest
