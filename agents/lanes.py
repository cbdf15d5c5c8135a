"""One partition of kairos.internal.moments, while this worker owns it.

A lane holds the moments read from its partition, in offset order, each
with the generation that writes its offer. As generations finish, the lane
delivers their offers through its outlet (agents/outlets.py: one Kafka
transaction per delivery) together with the partition's new commit, one
delivery at a time. A finished offer goes out at once, whatever the
moments before it are still doing: one slow answer (up to the LLM deadline)
holds up no other offer.

So the commit says more than an offset. :class:`Committed` is the first
moment not yet done (Kafka's committed offset: everything before it is
delivered or needs no offer) plus the offsets after it that are delivered
already (the offset's metadata). A worker that takes the partition over
reads both, starts at the offset and skips the moments listed: across a
crash or a rebalance, no moment's offer is written twice and none is lost.

The stages before are at-least-once, so a moment can be on the topic twice
(the same id at two offsets: a replay after a crash, or a paused worker's
late write after another took its partitions over). A lane remembers the
ids of the last ``RECENT_IDS`` moments it read, and starts with those of the
offers committed lately (agents/delivery.py): a moment it knows gets no
second offer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from agents.offers import GenerationFailed
from streams.codecs import now_ms
from streams.domain import Offer
from streams.errors import KairosError
from streams.metrics import Metrics
from streams.runtime.deadletters import DeadLetters

log = logging.getLogger(__name__)

# Tags the metadata of a commit; metadata without it (or none) lists nothing.
METADATA_TAG = "k1:"
# Moment ids a lane remembers, to give a moment read twice one offer.
RECENT_IDS = 20_000


@dataclass(frozen=True)
class Committed:
    """A partition's progress: every moment before ``offset`` is done, and so
    are the moments at the offsets in ``ahead`` (all past ``offset``)."""

    offset: int
    ahead: frozenset[int] = frozenset()

    def as_commit(self) -> OffsetAndMetadata:
        """Kafka's form: the offset, and ``ahead`` as deltas in its metadata.

        Kafka keeps up to 4096 bytes of metadata per partition
        (``offset.metadata.max.bytes``). ``ahead`` lies within one window
        past ``offset`` (no lane holds more than ``MAX_WINDOW`` moments,
        agents/delivery.py: 256, from its oldest unfinished one on), so it is
        at most 256 deltas of up to three digits: about 1 KB.
        """
        deltas = ",".join(str(o - self.offset) for o in sorted(self.ahead))
        return OffsetAndMetadata(self.offset, METADATA_TAG + deltas)

    @classmethod
    def read(cls, offset: int, metadata: str) -> Committed:
        """The progress a commit records; unreadable metadata lists nothing."""
        if not metadata.startswith(METADATA_TAG) or metadata == METADATA_TAG:
            return cls(offset)
        try:
            ahead = frozenset(offset + int(d) for d in metadata[len(METADATA_TAG) :].split(","))
        except ValueError:
            log.warning("offers: unreadable commit metadata %r; reading on from %d", metadata,
                        offset)  # fmt: skip
            return cls(offset)
        return cls(offset, ahead)


class Outlet(Protocol):
    """Where a lane's offers and commits go (agents/outlets.py)."""

    async def deliver(
        self, tp: TopicPartition, offers: list[Offer], committed: Committed
    ) -> None: ...

    async def close(self) -> None: ...


@dataclass(eq=False)
class Item:
    """One moment read from the partition, and what it takes to finish it.

    ``generation`` writes its offer; None when it gets none: ``note`` says
    why (suppressed, duplicate), or ``problem`` (unreadable: dead-lettered
    with that reason).
    """

    record: Any
    moment_id: str | None = None
    generation: asyncio.Future[Offer] | None = None
    note: str | None = None
    problem: str | None = None
    delivered: bool = False

    @property
    def offset(self) -> int:
        return int(self.record.offset)

    def ready(self) -> bool:
        return not self.delivered and (self.generation is None or self.generation.done())


class PartitionLost(KairosError):
    """Another worker owns the partition now (it fenced this one's producer)."""


class Lane:
    """The moments of ``tp`` in offset order, delivered as their offers are written.

    ``release`` is called once per item the lane lets go of (delivered and
    passed, or dropped when the lane closes); ``on_failure`` when a delivery
    fails, for anything but the partition going to another worker.
    """

    def __init__(
        self,
        tp: TopicPartition,
        outlet: Outlet,
        committed: Committed,
        release: Callable[[], None],
        on_failure: Callable[[BaseException], Awaitable[None]],
        recent: Iterable[str] = (),
        *,
        dead_letters: DeadLetters,
        metrics: Metrics,
    ) -> None:
        self.tp = tp
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.outlet = outlet
        self.next_offset = committed.offset
        self.open = True
        self._unread_ahead = set(committed.ahead)  # delivered by an earlier owner
        self._ids: OrderedDict[str, None] = OrderedDict.fromkeys(recent)
        self._items: deque[Item] = deque()
        self._release = release
        self._on_failure = on_failure
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def wants(self, offset: int) -> bool:
        """Whether the record at ``offset`` is new to this lane (not read again after a seek)."""
        return self.open and offset >= self.next_offset

    def delivered_earlier(self, offset: int) -> bool:
        """Whether an earlier owner delivered the moment at ``offset`` already."""
        return offset in self._unread_ahead

    def knows(self, moment_id: str) -> bool:
        """Whether the moment ``moment_id`` was read here (or its offer committed
        lately) already: a second copy of it gets no offer."""
        return moment_id in self._ids

    def add(self, item: Item) -> None:
        self.next_offset = item.offset + 1
        if item.moment_id is not None:
            self._ids[item.moment_id] = None
            if len(self._ids) > RECENT_IDS:
                self._ids.popitem(last=False)
        if item.offset in self._unread_ahead:
            self._unread_ahead.discard(item.offset)
            item.delivered = True
        self._items.append(item)
        if item.generation is not None and not item.generation.done():
            item.generation.add_done_callback(lambda _: self._wake.set())
        self._wake.set()

    async def close(self) -> list[Item]:
        """Finish the delivery under way, start no other; the items left undelivered."""
        self.open = False
        self._wake.set()
        await self._task
        await self.outlet.close()
        left = [item for item in self._items if not item.delivered]
        for _ in self._items:
            self._release()
        self._items.clear()
        return left

    async def _run(self) -> None:
        while self.open:
            await self._wake.wait()
            self._wake.clear()
            ready = [item for item in self._items if item.ready()]
            if ready and self.open and not await self._deliver(ready):
                return
            self._advance()

    async def _deliver(self, ready: list[Item]) -> bool:
        """Deliver ``ready``'s offers with the commit that marks them done; False
        if this lane must stop (the partition went elsewhere, or the worker is
        stopping on a failure)."""
        try:
            finished = [await self._finish(item) for item in ready]
            offers = [offer for offer, _outcome in finished if offer is not None]
            await self.outlet.deliver(self.tp, offers, self._committed_after(ready))
        except PartitionLost as exc:
            log.warning("offers: partition %d of %s is another worker's now: %s",
                        self.tp.partition, self.tp.topic, exc)  # fmt: skip
            self.open = False
            return False
        except Exception as exc:
            self.open = False
            await self._on_failure(exc)
            return False
        for item in ready:
            item.delivered = True
        self._count(offers, [outcome for _offer, outcome in finished])
        return True

    def _committed_after(self, ready: list[Item]) -> Committed:
        """The partition's progress once ``ready`` is delivered too."""
        done = {id(item) for item in ready}
        offset = self.next_offset
        for item in self._items:
            if not item.delivered and id(item) not in done:
                offset = item.offset
                break
        ahead = {item.offset for item in self._items if item.delivered or id(item) in done}
        ahead |= self._unread_ahead
        while offset in ahead:  # delivered by an earlier owner, not read here yet
            offset += 1
        return Committed(offset, frozenset(o for o in ahead if o > offset))

    def _advance(self) -> None:
        while self._items and self._items[0].delivered:
            self._items.popleft()
            self._release()

    async def _finish(self, item: Item) -> tuple[Offer | None, str]:
        """The item's offer (None if it gets none) and its outcome; a failure is
        in the dead letters once this returns."""
        if item.note is not None:
            return None, item.note
        reason = item.problem or "offer failed: no generation"
        if item.problem is None and item.generation is not None:
            try:
                return item.generation.result(), "offered"
            except GenerationFailed as exc:
                reason = f"offer failed: {exc}"
        sent = await self.dead_letters.send(
            item.record, code="internal_error", reason=reason, stage="offers"
        )
        await sent
        return None, "dead_letter"

    def _count(self, offers: list[Offer], outcomes: list[str]) -> None:
        for outcome in outcomes:
            self.metrics.offer_moments.labels(outcome).inc()
        delivered = now_ms()
        for offer in offers:
            self.metrics.stage_latency.labels("delivery").observe(
                max(0, delivered - offer["timings"]["emitted_at"]) / 1000
            )
            self.metrics.events_out.labels("offers", offer["moment"]["type"]).inc()
