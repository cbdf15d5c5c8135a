"""A partition's lane (agents/lanes.py) with a recording outlet: what it
delivers, when, and what each delivery's commit says."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from agents.lanes import Committed, Item, Lane, PartitionLost
from streams.metrics import Metrics

TP = TopicPartition("moments", 0)


class Outlet:
    """Records each delivery; raises ``fail`` instead when set."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.deliveries: list[tuple[list[str], Committed]] = []
        self.fail = fail
        self.closed = False

    async def deliver(self, tp: TopicPartition, offers: list[dict[str, Any]], c: Committed) -> None:
        if self.fail is not None:
            raise self.fail
        self.deliveries.append(([offer["offer_id"] for offer in offers], c))

    async def close(self) -> None:
        self.closed = True


def offer(n: int) -> dict[str, Any]:
    return {"offer_id": f"o{n}", "moment": {"type": "store_entry"}, "timings": {"emitted_at": 0}}


class Run:
    """A lane under test, with the futures standing for its generations."""

    def __init__(self, outlet: Outlet, committed: Committed, recent: tuple[str, ...] = ()) -> None:
        self.outlet = outlet
        self.released = 0
        self.failures: list[BaseException] = []
        self.generations: dict[int, asyncio.Future[dict[str, Any]]] = {}

        async def on_failure(exc: BaseException) -> None:
            self.failures.append(exc)

        self.dead: list[tuple[Any, str]] = []
        self.lane = Lane(TP, outlet, committed, self._release, on_failure, recent,
                         dead_letters=self, metrics=Metrics(CollectorRegistry()))  # fmt: skip

    async def send(self, record: Any, *, code: str, reason: str, stage: str) -> Any:
        """Stands in for the dead-letter topic: records, delivers at once."""
        self.dead.append((record, reason))
        return asyncio.sleep(0)

    def _release(self) -> None:
        self.released += 1

    def read(self, offset: int, note: str | None = None, moment: str | None = None) -> None:
        """The moment at ``offset`` read; its generation starts unless ``note``
        says why it gets no offer."""
        record = SimpleNamespace(topic=TP.topic, partition=TP.partition, offset=offset)
        future = asyncio.get_running_loop().create_future() if note is None else None
        if future is not None:
            self.generations[offset] = future
        self.lane.add(Item(record, moment or f"m{offset}", future, note=note))

    async def finish(self, offset: int) -> None:
        self.generations[offset].set_result(offer(offset))
        for _ in range(5):  # let the lane deliver
            await asyncio.sleep(0)


def test_a_commit_lists_the_moments_delivered_past_its_offset() -> None:
    committed = Committed(10, frozenset({12, 15}))
    assert committed.as_commit() == OffsetAndMetadata(10, "k1:2,5")
    assert Committed.read(10, "k1:2,5") == committed
    assert Committed(7).as_commit() == OffsetAndMetadata(7, "k1:")
    for foreign in ("", "k1:", "someone else's", "k1:2,x"):
        assert Committed.read(10, foreign) == Committed(10), foreign


def test_each_offer_goes_out_when_written_and_the_offset_waits_for_the_slowest() -> None:
    async def scenario() -> Run:
        run = Run(Outlet(), Committed(10))
        for offset in (10, 11, 12):
            run.read(offset)
        await run.finish(11)  # the moment at 10 is still being written
        await run.finish(12)
        await run.finish(10)
        await run.lane.close()
        return run

    run = asyncio.run(scenario())
    assert run.outlet.deliveries == [
        (["o11"], Committed(10, frozenset({11}))),
        (["o12"], Committed(10, frozenset({11, 12}))),
        (["o10"], Committed(13)),
    ]
    assert run.released == 3 and run.outlet.closed and not run.failures


def test_a_moment_without_an_offer_still_moves_the_commit_on() -> None:
    async def scenario() -> Run:
        run = Run(Outlet(), Committed(3))
        run.read(3, note="suppressed")  # recorded, no offer
        for _ in range(5):
            await asyncio.sleep(0)
        await run.lane.close()
        return run

    assert asyncio.run(scenario()).outlet.deliveries == [([], Committed(4))]


def test_a_lane_taking_over_skips_what_the_last_owner_delivered() -> None:
    async def scenario() -> Run:
        run = Run(Outlet(), Committed(10, frozenset({11, 13})))
        assert run.lane.delivered_earlier(11) and not run.lane.delivered_earlier(12)
        run.read(10)
        run.read(11, note="skipped")  # delivered before: nothing to write
        run.read(12)
        await run.finish(12)  # 13 is not read yet, and stays in the commit
        await run.finish(10)
        await run.lane.close()
        return run

    assert asyncio.run(scenario()).outlet.deliveries == [
        (["o12"], Committed(10, frozenset({11, 12, 13}))),
        (["o10"], Committed(14)),  # past 13 too, delivered before and never read here
    ]


def test_a_fenced_lane_stops_quietly_and_hands_back_what_it_held() -> None:
    async def scenario() -> tuple[Run, list[Item]]:
        run = Run(Outlet(fail=PartitionLost("fenced")), Committed(0))
        run.read(0)
        run.read(1)
        await run.finish(0)
        assert not run.lane.open and not run.lane.wants(2)
        return run, await run.lane.close()

    run, left = asyncio.run(scenario())
    assert [item.offset for item in left] == [0, 1]  # none delivered
    assert run.failures == [] and run.released == 2


def test_any_other_failed_delivery_stops_the_worker() -> None:
    broken = RuntimeError("broker gone")

    async def scenario() -> Run:
        run = Run(Outlet(fail=broken), Committed(0))
        run.read(0)
        await run.finish(0)
        await run.lane.close()
        return run

    run = asyncio.run(scenario())
    assert run.failures == [broken] and run.outlet.deliveries == []


def test_a_lane_knows_the_moments_it_read_and_those_offered_lately() -> None:
    async def scenario() -> list[bool]:
        run = Run(Outlet(), Committed(0), recent=("m-offered-by-the-last-owner",))
        run.read(0, moment="m-read-here")
        known = [run.lane.knows(m) for m in ("m-offered-by-the-last-owner", "m-read-here", "m-new")]
        await run.finish(0)
        await run.lane.close()
        return known

    assert asyncio.run(scenario()) == [True, True, False]
