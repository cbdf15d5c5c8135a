"""Context: the agent that keeps per-user profiles in a RocksDB table.

Reads kairos.internal.events, where each message is a bundle (a JSON array)
of events whose profile ids all live in the message's partition, so the
table partition and the message partition agree. Per bundle it reads each
user's profile once, folds in that user's events (agents/fold.py, no I/O),
and writes it back once: one table write and one changelog message per user
per bundle, however many events the user had. What the fold produced goes
out through agents/output.py.

A bundle is folded here or, if this worker's ingest produced it, already
folded there (the in-process hand-off, agents/handoffs.py): then this agent
waits for that work. Records the stream consumer skipped are read back and
handled first (agents/continuity.py). A sweep marker instead fires the partition's due timers
(agents/timers.py) and expires idle profiles (agents/expiry.py).

Timers run on event time: a tick fires those the partition's watermark has
passed (agents/clock.py), or, on a partition quiet for ``timer_idle_s``,
those due by the wall clock less the allowed lateness. The partition's clock
is read from the table with each bundle and written back with its changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from agents.clock import Clock, clock_key, clock_partition
from agents.continuity import Continuity, SkippedRecords, read_range
from agents.expiry import Sweep, is_tick, send_ticks
from agents.fold import Fold, Policy
from agents.freshness import FAMILIES, observe
from agents.guard import fold_all
from agents.handoffs import Placed
from agents.output import emit
from agents.profile import Profile, upgraded
from agents.runtime import Runtime
from agents.timers import TIMER_PREFIX, due_until, key_user, parse_timer
from streams.codecs import loads, now_ms
from streams.domain import Event
from streams.runtime.acks import process_in_order
from streams.runtime.changelog import read, scan, write_batch

log = logging.getLogger(__name__)

IN_FLIGHT = 200
# Timers read per tick, at most: the rest wait for the next one.
TIMER_BATCH = 2000


class ContextStage:
    """The context agent's I/O around the fold: the table, ticks, output."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.policy = Policy.of(rt.settings, rt.rules, rt.reference)
        self.sweep = Sweep(int(rt.settings.profile_ttl_s * 1000), self._partition_of)
        self.continuity = Continuity()
        self.held_since: dict[int, int] = {}  # partition: when this worker took it (wall)
        metrics = rt.metrics
        metrics.freshness_slo.set(rt.settings.freshness_slo_p99_ms / 1000)
        for family in FAMILIES:  # served from the start, each at zero
            metrics.feature_freshness.labels(family)

    def loader(self, partition: int) -> Callable[[str], Profile | None]:
        """Reads profiles of ``partition`` (the bundle's) from the table."""
        profiles = self.rt.profiles

        def load(key: str) -> Profile | None:
            stored = read(profiles, partition, key.encode())
            return upgraded(loads(stored)) if stored else None

        return load

    def clock(self, partition: int) -> Clock:
        return Clock.read(read(self.rt.profiles, partition, clock_key(partition)))

    def clock_changes(self, partition: int, fold: Fold) -> list[tuple[bytes, bytes | None]]:
        return [(clock_key(partition), fold.clock.encoded())] if fold.clock.moved else []

    async def fold_bundle(self, partition: int, events: list[Event], where: Any) -> Awaitable[Any]:
        """Fold a bundle's events into ``partition``'s profiles, write them, emit the
        moments; returns what is left to land. The caller holds the in-process lock.

        ``where`` is the bundle's record (or its :class:`Placed`), for dead letters.
        """
        fold, changes = fold_all(
            lambda: Fold(self.loader(partition), self.policy, self.clock(partition)), events
        )
        changes += self.clock_changes(partition, fold)
        written = await write_batch(self.rt.app, self.rt.profiles, partition, changes)
        # In the table now: what the Profile API reads.
        observe(self.rt.metrics.feature_freshness, fold.fresh, now_ms())
        if events:  # one bundle's events share their ingest time
            self.rt.metrics.stage_latency.labels("ingest_to_state").observe(
                max(0, now_ms() - events[0].get("at", now_ms())) / 1000
            )
        return await emit(self.rt, where, fold, written)

    async def fold_in_process(
        self, partition: int, bundle: bytes
    ) -> tuple[list[tuple[str, bytes]], Placed, Awaitable[Any]] | None:
        """Fold ``bundle`` now if this worker owns ``partition`` (ingest's hand-off):
        the headers to produce it with, where it goes, and its work; None to
        leave it to the topic."""
        in_process, topic = self.rt.in_process, self.rt.topics.events.get_topic_name()
        tp = TP(topic, partition)
        if not in_process.owns(tp):
            return None
        events = loads(bundle)
        async with in_process.lock:
            if not in_process.owns(tp):  # a rebalance began while this waited
                return None
            placed = Placed(topic, partition)
            work = await self.fold_bundle(partition, events, placed)
        return in_process.remember(work, tp), placed, work

    async def handle(self, record: Any) -> Awaitable[Any]:
        """One record the stream hands over, after any it skipped before it."""
        before = await self.skipped_before(record.message)
        work = await self.handle_message(record.message)
        return asyncio.gather(*before, work) if before else work

    async def skipped_before(self, message: Any) -> list[Awaitable[Any]]:
        """Handle the records before ``message`` that the consumer never handed over."""
        skipped = self.continuity.skipped(message.partition, message.offset)
        if not skipped:
            return []
        log.warning(
            "context: offsets %d-%d of %s/%d were skipped by the stream consumer; reading them",
            skipped.start, skipped.stop - 1, message.topic, message.partition,
        )  # fmt: skip
        self.rt.metrics.context_skipped.inc(len(skipped))
        tp = TopicPartition(message.topic, message.partition)
        try:
            records = await read_range(self._reader, tp, skipped)
        except SkippedRecords as exc:  # the worker stops: its restart reads from the last commit
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return [failed]
        return [await self.handle_message(record) for record in records]

    def _reader(self) -> AIOKafkaConsumer:
        settings = self.rt.settings
        return self.rt.clients.consumer(
            client_id=f"{settings.app_id}-context-reread", enable_auto_commit=False
        )

    def assigned(self, partitions: set[TP]) -> None:
        name = self.rt.topics.events.get_topic_name()
        mine = {tp.partition for tp in partitions if tp.topic == name}
        self.continuity.assigned(mine)
        now = now_ms()  # a partition kept through the rebalance keeps its time
        self.held_since = {p: self.held_since.get(p, now) for p in mine}

    async def handle_message(self, message: Any) -> Awaitable[Any]:
        """One record of kairos.internal.events: a bundle (folded here, or already
        in process) or a tick."""
        rt = self.rt
        folded = rt.in_process.claim(message)
        if folded is not None:
            rt.metrics.context_bundles.labels("in_process").inc()
            return folded
        try:
            events = loads(message.value)
        except Exception as exc:
            return await rt.dead_letters.send(
                message, code="internal_error", reason=f"unreadable bundle: {exc!r}",
                stage="context",
            )  # fmt: skip
        async with rt.in_process.lock:
            if is_tick(events):
                return await self.tick(message, events[0].get("ts") or now_ms())
            rt.metrics.context_bundles.labels("topic").inc()
            return await self.fold_bundle(message.partition, events, message)

    async def tick(self, message: Any, now: int) -> Awaitable[Any]:
        """On a partition's tick at ``now`` (wall clock): fire the timers its event
        time has passed, expire idle profiles."""
        partition, profiles, policy = message.partition, self.rt.profiles, self.policy
        fold = Fold(self.loader(partition), policy, self.clock(partition))
        at = fold.clock.timer_time(now, policy.allowed_lateness_ms, policy.timer_idle_ms,
                                   self.held_since.get(partition, now))  # fmt: skip
        changes = self.fire_due(fold, partition, at, now) + fold.changes()
        gone = self.sweep.expired(profiles, partition, now, fold.dirty)
        if gone:
            self.rt.metrics.profiles_expired.inc(len(gone))
            log.info("expired %d profiles in partition %d", len(gone), partition)
        changes += [(key, None) for key in gone]
        written = await write_batch(self.rt.app, profiles, partition, changes)
        return await emit(self.rt, message, fold, written)

    def fire_due(
        self, fold: Fold, partition: int, event_time: int, now: int
    ) -> list[tuple[bytes, bytes | None]]:
        """Fire ``partition``'s timers due by ``event_time`` into ``fold`` (on a tick
        at ``now``, wall clock); their deletions."""
        due = scan(self.rt.profiles, partition, TIMER_PREFIX, TIMER_BATCH, self._partition_of,
                   due_until(event_time))  # fmt: skip
        spent: list[tuple[bytes, bytes | None]] = []
        for key, _value in due:
            spent.append((key, None))  # spent, whatever the rule decides
            try:
                due_at, rule, user = parse_timer(key)
            except ValueError:
                log.warning("dropped an unreadable timer key %r", key)
                continue
            fold.fire(rule, user, event_time, now, due_at)
        return spent

    def _partition_of(self, key: bytes) -> int:
        clock = clock_partition(key)
        return self.rt.partition_for(key_user(key)) if clock is None else clock

    async def send_ticks(self) -> None:
        await send_ticks(self.rt.app, self.rt.topics.events)


def install(rt: Runtime) -> ContextStage:
    """Register the context agent and its sweep timer with ``rt.app``."""
    stage = ContextStage(rt)

    async def context(stream: Any) -> None:
        on_failure = rt.dead_letters.crash_worker
        await process_in_order(stream, stage.handle, window=IN_FLIGHT, on_failure=on_failure)

    async def assigned(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        stage.assigned(args[0])

    rt.app.agent(rt.topics.events, name="kairos.context")(context)
    rt.app.on_partitions_assigned.connect(assigned)
    rt.app.timer(interval=rt.settings.sweep_interval_s)(stage.send_ticks)
    return stage
