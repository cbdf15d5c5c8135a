"""At-least-once for agents whose work outlives the loop iteration.

An agent hands each event's work (a send, or a generation then a send) to
:class:`OrderedAcks` and moves on to the next event. An event is acked only
when its work is done and every event before it is acked, so the offset
Faust commits never passes work that has not landed. (Acking out of order
is not safe: faust-streaming 0.15.3 commits past a single unacked offset at
the head of a partition.) At most ``window`` events are in flight; the
agent waits for the oldest when the window is full.

If work fails, the event must not be acked and nothing after it may be:
:class:`DeliveryFailed` is raised and the worker should crash, so that a
restart resumes from the last committed offset.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from streams.errors import DeliveryFailed


class OrderedAcks:
    """Acks events of ``stream`` in arrival order once their work is done."""

    def __init__(self, stream: Any, window: int) -> None:
        self._stream = stream
        self._window = window
        self._pending: deque[tuple[Any, asyncio.Future[Any]]] = deque()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._pending)

    async def track(self, event: Any, work: Awaitable[Any]) -> None:
        """Take ownership of ``event`` until ``work`` completes."""
        future = asyncio.ensure_future(work)
        future.add_done_callback(lambda _: self._wake.set())
        self._pending.append((event, future))
        await self.ack_ready()
        while len(self._pending) >= self._window:
            await asyncio.wait({self._pending[0][1]})
            await self.ack_ready()

    async def ack_ready(self) -> None:
        while self._pending and self._pending[0][1].done():
            event, future = self._pending.popleft()
            if future.cancelled():
                raise DeliveryFailed("work for an event was cancelled")
            error = future.exception()
            if error is not None:
                raise DeliveryFailed(f"work for an event failed: {error!r}") from error
            await self._stream.ack(event)

    async def run(self) -> None:
        """Ack completed work while the stream is idle; runs until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.ack_ready()

    async def drain(self) -> None:
        """Wait for all work in flight, acking as it completes."""
        while self._pending:
            await asyncio.wait({self._pending[0][1]})
            await self.ack_ready()


async def process_in_order(
    stream: Any,
    handle: Callable[[Any], Awaitable[Awaitable[Any]]],
    *,
    window: int,
    on_failure: Callable[[BaseException], Awaitable[None]],
) -> None:
    """Run ``handle`` on each event in arrival order; ack as its work lands.

    ``handle(event)`` does the ordered part inline (deciding, issuing sends)
    and returns what remains to wait for: delivery futures, or a task.
    """
    events = stream.noack()
    acks = OrderedAcks(events, window)
    idle = asyncio.create_task(acks.run())
    reporting: set[asyncio.Future[None]] = set()

    def report(task: asyncio.Task[None]) -> None:
        # A failure found while the stream is idle must not wait for the next event.
        if not task.cancelled() and (error := task.exception()) is not None:
            future = asyncio.ensure_future(on_failure(error))
            reporting.add(future)
            future.add_done_callback(reporting.discard)

    idle.add_done_callback(report)
    try:
        async for event in events.events():
            await acks.track(event, await handle(event))
    except DeliveryFailed as exc:
        await on_failure(exc)
        raise
    finally:
        idle.cancel()
