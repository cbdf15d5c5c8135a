"""The expiry sweep: a person's state is deleted after ``profile_ttl_s``
without an event.

Every ``sweep_interval_s`` each worker sends a sweep marker (a tick) to each
partition of kairos.internal.events it owns (:func:`send_ticks`). On it, the
context agent fires the partition's due timers, then reads the next
:data:`SWEEP_BATCH` profiles after where the last tick stopped
(:class:`Sweep`) and deletes those idle too long, with a tombstone in the
changelog. Going through the stream keeps both in order with the
partition's updates, so a tick cannot delete a profile an event has just
touched, nor judge a cart on stale state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from agents.timers import TIMERS_END
from streams.codecs import dumps, loads, now_ms
from streams.runtime.changelog import scan

SWEEP = "sweep"
SWEEP_BATCH = 2000


def is_tick(events: list[dict[str, Any]]) -> bool:
    """Whether a bundle read from kairos.internal.events is a sweep marker."""
    return bool(events) and events[0].get("kind") == SWEEP


def expired(entries: list[tuple[bytes, bytes]], now: int, ttl_ms: int) -> list[bytes]:
    """Keys of the profiles (and merge stubs) without an event for longer than ``ttl_ms``."""
    return [key for key, value in entries if now - loads(value).get("updated", 0) > ttl_ms]


class Sweep:
    """Where each partition's sweep has got to: it reads a batch per tick and
    wraps round to the first profile at the end."""

    def __init__(self, ttl_ms: int, partition_of: Callable[[bytes], int]) -> None:
        self.ttl_ms = ttl_ms
        self.partition_of = partition_of
        self._swept: dict[int, bytes] = {}  # per partition, the last key read

    def expired(
        self, profiles: Any, partition: int, now: int, touched: Collection[str]
    ) -> list[bytes]:
        """The next batch's keys idle too long, but none in ``touched`` (this tick's fold)."""
        start = self._swept.get(partition, TIMERS_END)
        entries = scan(profiles, partition, start, SWEEP_BATCH, self.partition_of)
        self._swept[partition] = entries[-1][0] if len(entries) == SWEEP_BATCH else TIMERS_END
        return [k for k in expired(entries, now, self.ttl_ms) if k.decode() not in touched]


async def send_ticks(app: Any, events: Any) -> None:
    """A sweep marker to each partition of the internal events this worker owns."""
    name = events.get_topic_name()
    for tp in app.assignor.assigned_actives():
        if tp.topic == name:
            marker = dumps([{"kind": SWEEP, "ts": now_ms()}])
            await events.send(value=marker, partition=tp.partition)
