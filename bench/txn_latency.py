"""Where a transactional offer's latency goes: ``python -m bench.txn_latency [N]``.

A fresh embedded broker (as the bench starts it), kairos's topics, and N
offers ``GAP_S`` apart, read back by a ``read_committed`` consumer built as
the bench's (bench/session.py), in three ways:

- ``steps``: one transaction, each step awaited in turn and timed: begin to
  the produce acknowledged, ``send_offsets_to_transaction``, the commit
  (EndTxn), and the commit to the record received.
- ``delivery``: ``Transactional.deliver`` as the lanes call it (the produce
  and the offsets sent together, then the commit).
- ``plain``: the idempotent producer of ``KAIROS_OFFERS_EXACTLY_ONCE=false``
  (its commit is off the offer's path).

Every request a producer sends is timed too (its round trip, by request
type), so that a slow step can be told from a slow answer. ``WARM`` quick
rounds of each come first, not counted: a broker fresh from its start
answers its first transactions more slowly than one that has served some.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from agents.lanes import Committed
from agents.outlets import Transactional, offers_producer
from bench.llm import bench_broker
from bench.stack import stack_settings
from streams import clients
from streams.codecs import dumps
from streams.metrics import Metrics
from streams.runtime.admin import create_topics
from streams.runtime.topics import internal_name
from streams.settings import Settings

GAP_S = 0.2
ROUNDS = 50
WARM = 200
WARM_GAP_S = 0.01
GROUP = "txn-latency"
Timed = dict[str, list[float]]
Round = Callable[[int], Awaitable[None]]


def ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


class Arrivals:
    """A ``read_committed`` consumer of kairos.offers, and when each key arrived."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.waiting: dict[bytes, asyncio.Future[float]] = {}

    def expect(self, key: bytes) -> asyncio.Future[float]:
        return self.waiting.setdefault(key, asyncio.get_running_loop().create_future())

    async def run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    if record.key is not None:
                        self.expect(record.key).set_result(now)


@contextlib.contextmanager
def requests_timed(producer: AIOKafkaProducer) -> Iterator[Timed]:
    """The round trip of every request ``producer`` sends meanwhile, by request type."""
    timed: Timed = defaultdict(list)
    client = producer.client
    send = client.send

    async def timed_send(node_id: int, request: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await send(node_id, request, *args, **kwargs)
        finally:
            timed[type(request).__name__.removesuffix("Request")].append(ms_since(started))

    client.send = timed_send
    try:
        yield timed
    finally:
        client.send = send


class Offers:
    """The rounds: each sends one offer and records its steps in ``steps``."""

    def __init__(self, settings: Settings, arrivals: Arrivals, producer: AIOKafkaProducer,
                 outlet: Transactional | None = None) -> None:  # fmt: skip
        self.topic = settings.topics.offers
        self.source = TopicPartition(internal_name(settings, "moments"), 0)
        self.arrivals = arrivals
        self.producer = producer
        self.outlet = outlet
        self.steps: Timed = defaultdict(list)

    def mark(self, name: str, since: float) -> float:
        self.steps[name].append(ms_since(since))
        return time.perf_counter()

    async def consumed(self, key: bytes, since: float, started: float, name: str) -> None:
        received = await self.arrivals.expect(key)
        self.steps[name].append((received - since) * 1000)
        self.steps["begin_to_consumed"].append((received - started) * 1000)

    async def steps_round(self, offset: int) -> None:
        producer, key = self.producer, uuid.uuid4().hex.encode()
        started = time.perf_counter()
        async with producer.transaction():
            await (await producer.send(self.topic, dumps({}), key=key))
            at = self.mark("produce_ack", started)
            commit = {self.source: Committed(offset).as_commit()}
            await producer.send_offsets_to_transaction(commit, GROUP)
            at = self.mark("send_offsets", at)
        ended = self.mark("end_txn", at)
        await self.consumed(key, ended, started, "commit_to_consumed")

    async def delivery_round(self, offset: int) -> None:
        assert self.outlet is not None
        user = uuid.uuid4().hex
        offer: Any = {"user": user}
        started = time.perf_counter()
        await self.outlet.deliver(self.source, [offer], Committed(offset))
        delivered = self.mark("deliver", started)
        await self.consumed(user.encode(), delivered, started, "deliver_to_consumed")

    async def plain_round(self, _offset: int) -> None:
        key = uuid.uuid4().hex.encode()
        started = time.perf_counter()
        await (await self.producer.send(self.topic, dumps({}), key=key))
        acked = self.mark("produce_ack", started)
        await self.consumed(key, acked, started, "ack_to_consumed")


async def rounds(offers: Offers, one: Round, count: int) -> Timed:
    """``WARM`` rounds, then ``count`` timed ones ``GAP_S`` apart; the requests' times."""
    for n in range(WARM):
        await one(n)
        await asyncio.sleep(WARM_GAP_S)
    offers.steps.clear()
    await asyncio.sleep(GAP_S)  # the last warm-up's markers written
    with requests_timed(offers.producer) as requests:
        for n in range(WARM, WARM + count):
            await one(n)
            await asyncio.sleep(GAP_S)
    return requests


@contextlib.asynccontextmanager
async def reading(settings: Settings) -> Any:
    """Arrivals on every partition of kairos.offers, read from their ends."""
    consumer = clients.consumer(
        settings,
        auto_offset_reset="latest",
        group_id=None,
        fetch_max_wait_ms=settings.consumer_fetch_wait_ms,
        isolation_level="read_committed",
    )
    await consumer.start()
    topic = settings.topics.offers
    consumer.assign([TopicPartition(topic, p) for p in range(settings.partitions)])
    await consumer.seek_to_end()
    arrivals = Arrivals(consumer)
    task = asyncio.ensure_future(arrivals.run())
    try:
        yield arrivals
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()


def summary(label: str, timed: Timed) -> list[str]:
    lines = [f"{label}:"]
    for name, values in timed.items():
        cuts = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
        lines.append(f"  {name:22} n={len(values):4}  p50 {cuts[49]:7.2f}  p90 {cuts[89]:7.2f}"
                     f"  max {max(values):7.2f} ms")  # fmt: skip
    return lines


async def transactional(settings: Settings, arrivals: Arrivals, count: int) -> list[str]:
    outlet = await Transactional.open(settings, Metrics(CollectorRegistry()), 0, GROUP)
    try:
        offers = Offers(settings, arrivals, outlet.producer, outlet)
        requests = await rounds(offers, offers.steps_round, count)
        report = summary("steps", offers.steps) + summary("steps: requests", requests)
        offers = Offers(settings, arrivals, outlet.producer, outlet)
        requests = await rounds(offers, offers.delivery_round, count)
        return report + summary("delivery", offers.steps) + summary("delivery: requests", requests)
    finally:
        await outlet.close()


async def plain(settings: Settings, arrivals: Arrivals, count: int) -> list[str]:
    producer = offers_producer(settings, client_id="txn-latency-plain")
    await producer.start()
    try:
        offers = Offers(settings, arrivals, producer)
        requests = await rounds(offers, offers.plain_round, count)
        return summary("plain", offers.steps) + summary("plain: requests", requests)
    finally:
        await producer.stop()


async def run(settings: Settings, count: int) -> list[str]:
    await create_topics(settings)
    async with reading(settings) as arrivals:
        report = await transactional(settings, arrivals, count)
        return report + await plain(settings, arrivals, count)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else ROUNDS
    before = load()
    workdir, settings, _ = stack_settings()
    broker = bench_broker(settings, workdir)
    try:
        lines = asyncio.run(run(settings, count))
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{count} rounds {GAP_S:g} s apart after {WARM} to warm up; "
          f"load average {before} before, {load()} after")  # fmt: skip
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
