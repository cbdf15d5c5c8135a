"""Ordered acks: the committed offset never passes work that has not landed."""

from __future__ import annotations

import asyncio

import pytest

from streams.errors import DeliveryFailed
from streams.runtime.acks import OrderedAcks, process_in_order


class Stream:
    def __init__(self) -> None:
        self.acked: list[int] = []

    async def ack(self, event: int) -> None:
        self.acked.append(event)


def test_acks_in_arrival_order_when_work_finishes_out_of_order() -> None:
    async def scenario() -> list[int]:
        stream = Stream()
        acks = OrderedAcks(stream, window=10)
        idle = asyncio.create_task(acks.run())
        gates = [asyncio.Event() for _ in range(3)]
        for n, gate in enumerate(gates):
            await acks.track(n, gate.wait())
        gates[2].set()
        gates[1].set()
        await asyncio.sleep(0.01)
        assert stream.acked == []  # event 0 is still in flight
        gates[0].set()
        await asyncio.sleep(0.01)
        idle.cancel()
        return stream.acked

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_failed_work_stops_acking_at_that_event() -> None:
    async def boom() -> None:
        raise RuntimeError("send failed")

    async def scenario(stream: Stream) -> None:
        acks = OrderedAcks(stream, window=10)
        await acks.track(0, asyncio.sleep(0))
        await acks.track(1, boom())
        await acks.track(2, asyncio.sleep(0))
        await acks.drain()

    stream = Stream()
    with pytest.raises(DeliveryFailed):
        asyncio.run(scenario(stream))
    assert stream.acked == [0]


def test_window_bounds_work_in_flight() -> None:
    async def scenario() -> int:
        stream = Stream()
        acks = OrderedAcks(stream, window=2)
        peak = 0
        for n in range(6):
            await acks.track(n, asyncio.sleep(0.01))
            peak = max(peak, len(acks))
        await acks.drain()
        assert stream.acked == list(range(6))
        return peak

    assert asyncio.run(scenario()) < 2 + 1


def test_a_failure_while_idle_stops_the_worker_without_waiting_for_more_events() -> None:
    class OneEventStream(Stream):
        def noack(self) -> OneEventStream:
            return self

        async def events(self):  # type: ignore[no-untyped-def]
            yield 1
            await asyncio.Event().wait()  # then nothing more arrives

    failures: list[BaseException] = []

    async def scenario() -> None:
        async def handle(event: int) -> asyncio.Future[None]:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.01, future.set_exception, OSError("lost"))
            return future

        async def on_failure(exc: BaseException) -> None:
            failures.append(exc)

        agent = asyncio.create_task(
            process_in_order(OneEventStream(), handle, window=10, on_failure=on_failure)
        )
        for _ in range(100):
            if failures:
                break
            await asyncio.sleep(0.01)
        agent.cancel()

    asyncio.run(scenario())
    assert len(failures) == 1 and isinstance(failures[0], DeliveryFailed)
