"""The two hand-offs between stages inside one worker, owned by its Runtime.

Both only take a trip through the broker off a path; the topic stays the
record, and what a restart replays.

- :class:`InProcess`: ingest folds a bundle into the profiles as it
  produces it; the context agent, reading it back, waits for that work.
- :class:`EarlyStarts`: the context agent starts a moment's offer as it
  writes the moment; the delivery stage, reading it back, claims it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

from faust.types import TP

from streams.domain import Moment, Offer
from streams.metrics import Metrics

Generation = asyncio.Future[Offer]
WriteOffer = Callable[[Moment], Awaitable[Offer]]


class Placed:
    """Where a bundle folded in-process lands on kairos.internal.events: its
    partition now, its offset once ingest's produce is acknowledged."""

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.key = None
        self.offset: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def follow(self, delivery: Awaitable[Any]) -> None:
        """Take the offset from ``delivery``, the bundle's produce."""

        def done(future: asyncio.Future[Any]) -> None:
            if self.offset.done():
                return
            if future.cancelled() or future.exception() is not None:
                self.offset.set_result(-1)  # ingest stops the worker; the offset is unknown
            else:
                self.offset.set_result(future.result().offset)

        asyncio.ensure_future(delivery).add_done_callback(done)


class InProcess:
    """Bundles folded as this worker's ingest produces them, not read back first.

    Ingest folds each bundle for a partition of kairos.internal.events this
    worker owns (actively, recovered, not rebalancing) at once, as the agent
    would (agents/context.py), under :attr:`lock`, then produces it
    with the header :meth:`remember` gives. When the agent reads that bundle
    it waits for the work already done instead of folding it again
    (:meth:`claim`), and acks it once that work has landed. The topic stays
    the record: a restart, or another worker that takes the partition, finds
    no token it knows and folds the bundle as usual (dropping events already
    applied by id).

    Only bundles this process produced are claimed, so events from other
    workers' ingest or forwarded by merges still come through the topic;
    they may be folded after newer in-process ones, as events of different
    source partitions always could.
    """

    HEADER = "kairos-folded"
    # Beyond this many unclaimed, those of partitions no longer owned are dropped.
    LIMIT = 10_000

    def __init__(self, app: Any) -> None:
        self.app = app
        # One bundle's fold and writes at a time, whether the agent or ingest
        # runs it: two interleaved could send a profile's changelog records out
        # of order.
        self.lock = asyncio.Lock()
        self._prefix = uuid.uuid4().hex[:16]
        self._count = itertools.count()
        self._folded: dict[bytes, tuple[Awaitable[Any], TP]] = {}

    def owns(self, tp: TP) -> bool:
        app = self.app
        return bool(
            cast(Any, app.tables).actives_ready
            and not app.rebalancing
            and not app.in_recovery
            and tp in app.assignor.assigned_actives()
        )

    def remember(self, work: Awaitable[Any], tp: TP) -> list[tuple[str, bytes]]:
        """Keep ``work`` (a bundle of ``tp`` folded here) for the agent to
        claim; the headers to produce the bundle with."""
        if len(self._folded) >= self.LIMIT:
            owned = self.app.assignor.assigned_actives()
            self._folded = {t: v for t, v in self._folded.items() if v[1] in owned}
        token = f"{self._prefix}:{next(self._count)}".encode()
        self._folded[token] = (work, tp)
        return [(self.HEADER, token)]

    def claim(self, message: Any) -> Awaitable[Any] | None:
        """The work of a bundle folded here already, now the caller's to wait for."""
        headers = message.headers or ()
        for key, value in headers.items() if isinstance(headers, Mapping) else headers:
            if key == self.HEADER:
                folded = self._folded.pop(bytes(value), None)
                return folded[0] if folded else None
        return None


class EarlyStarts:
    """Generations started as their moments are detected, by moment id.

    Only moments of partitions of kairos.internal.moments whose offers this
    worker delivers start early (``owns``, given by agents/delivery.py to
    :meth:`open` while it runs), and at most ``limit`` wait to be claimed,
    so a stalled model cannot pile them up: beyond that a moment waits to be
    read from the topic, as it would without them. A generation is only
    ever an offer written: delivering it is the partition owner's
    (agents/lanes.py), so a generation whose partition moves to another
    worker is dropped, and the new owner writes that offer from the topic.
    One left unclaimed for ``max_age_s`` is dropped too: its moment was
    delivered by another owner while the partition was away, and will not
    be read here again.
    """

    def __init__(self, limit: int, max_age_s: float, metrics: Metrics) -> None:
        self.limit = limit
        self.max_age_s = max_age_s
        self.metrics = metrics
        self._write: WriteOffer | None = None
        self.owns: Callable[[int], bool] = _nothing
        # moment id: (generation, partition, when it was handed here)
        self._started: dict[str, tuple[Generation, int, float]] = {}

    def open(self, write: WriteOffer, owns: Callable[[int], bool]) -> None:
        """Start taking moments: the delivery stage runs, writing offers with
        ``write``, and delivers the partitions ``owns`` says."""
        self._write, self.owns = write, owns

    def close(self) -> None:
        """Stop taking moments, and own no partition: the next :meth:`forget`
        drops every generation not yet claimed."""
        self._write, self.owns = None, _nothing

    def start(self, moment: Moment, partition: int) -> None:
        """Start the offer for ``moment`` (just detected; ``partition`` is its
        user's) now, if this worker delivers that partition's offers."""
        if self._write is None or moment.get("suppressed") or not self.owns(partition):
            return
        if moment["id"] in self._started:  # detected twice (a replay): one generation
            return
        if len(self._started) >= self.limit:
            self.forget()
            if len(self._started) >= self.limit:
                return
        future = asyncio.ensure_future(self._write(moment))
        self._started[moment["id"]] = (future, partition, time.monotonic())
        self.metrics.offer_starts.labels("detection").inc()

    def claim(self, moment_id: str) -> Generation | None:
        """The generation started for ``moment_id``, now the caller's to wait for."""
        started = self._started.pop(moment_id, None)
        return started[0] if started else None

    def park(self, moment_id: str, future: Generation, partition: int) -> None:
        """Keep a claimed generation whose partition is being reassigned: if it
        comes back to this worker, reading the moment again claims it."""
        self._started[moment_id] = (future, partition, time.monotonic())

    def forget(self) -> None:
        """Drop (cancel) the generations of partitions this worker does not
        own, and those unclaimed for longer than ``max_age_s``."""
        oldest = time.monotonic() - self.max_age_s
        for moment_id, (future, partition, since) in list(self._started.items()):
            if not self.owns(partition) or since < oldest:
                del self._started[moment_id]
                drop(future)


def _nothing(_partition: int) -> bool:
    return False


def drop(future: asyncio.Future[Any]) -> None:
    """Cancel a generation no one will deliver; its failure, if any, was logged."""
    future.cancel()
    future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # logged where it was raised
