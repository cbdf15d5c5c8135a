"""A partition's event-time clock: its watermark, and when it last heard an event.

The watermark of a partition of kairos.internal.events is the newest event
time the context agent has folded there, less ``allowed_lateness_s``. It
decides two things (docs/EVENTS.md, "Event time"):

- a behavioural event older than the watermark is too late for the windowed
  features: it updates everything else in the profile, and is counted
  ``late`` (agents/fold.py);
- a timer fires once the watermark passes its due time (agents/context.py),
  so a replayed backlog judges each cart with the events that followed it,
  not by the wall clock.

Event times further ahead of their arrival than ``max_future_s`` never get
here: ingest takes such an event at its arrival time (agents/ingest.py), so
one fast clock cannot drag the watermark ahead of every true event.

A partition nobody writes to would hold its timers forever, so on a tick a
partition that has heard no event for ``timer_idle_s`` (counted from its
latest event's arrival, and never from before this worker took the
partition over) judges its timers at the wall clock less the lateness: what
its watermark would be had an event stamped now arrived. The fallback never
goes further than that, and it is not stored: the watermark stays what the
events made it.

The clock lives in the profiles table, one entry per partition under
``b"\\x00clock:<partition>"``, written with the bundle's profile changes and
changelogged with them, so it survives a restart or a move to another
worker exactly as the profiles it judged did. Recomputing it instead would
mean reading every profile of the partition at start-up, and the replayed
bundles since the last commit could then be judged against a different
watermark than the first time. The key sorts before every timer and every
profile id, so neither the timer scan nor the expiry sweep reads it, and a
person's id cannot hold the NUL byte it starts with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import orjson

from streams.domain import Event

log = logging.getLogger(__name__)

CLOCK_PREFIX = b"\x00clock:"
# Events of kairos's own making: their times are another event's, already counted.
INTERNAL_KINDS = frozenset({"merge", "absorb", "timer"})


def clock_key(partition: int) -> bytes:
    return CLOCK_PREFIX + str(partition).encode()


def clock_partition(key: bytes) -> int | None:
    """The partition a clock's key belongs to; None for any other key."""
    if not key.startswith(CLOCK_PREFIX):
        return None
    return int(key[len(CLOCK_PREFIX) :])


@dataclass
class Clock:
    """``newest``: the newest event time folded (0: none yet); ``heard_at``: when
    the latest event arrived (wall clock, from ingest's arrival stamp)."""

    newest: int = 0
    heard_at: int = 0
    moved: bool = False  # changed since read: to be written

    @classmethod
    def read(cls, stored: bytes | None) -> Clock:
        """The clock as stored; a fresh one if none is, or it cannot be read (the
        next events set it again: only lateness is judged more leniently meanwhile)."""
        if not stored:
            return cls()
        try:
            newest, heard_at = orjson.loads(stored)
            return cls(int(newest), int(heard_at))
        except (ValueError, TypeError):
            log.warning("unreadable partition clock %r: starting it again", stored[:64])
            return cls()

    def encoded(self) -> bytes:
        return orjson.dumps([self.newest, self.heard_at])

    def watermark(self, lateness_ms: int) -> int:
        """The event time before which windows are closed (0 before any event)."""
        return self.newest - lateness_ms if self.newest else 0

    def observe(self, event: Event) -> None:
        """Move the clock on for an event folded into the partition."""
        if event["kind"] in INTERNAL_KINDS:
            return
        at = event.get("at") or 0
        if event["ts"] > self.newest or at > self.heard_at:
            self.newest = max(self.newest, event["ts"])
            self.heard_at = max(self.heard_at, at)
            self.moved = True

    def timer_time(self, wall: int, lateness_ms: int, idle_ms: int, held_since: int) -> int:
        """The event time a tick at ``wall`` judges the timers at: the watermark;
        for a partition quiet for ``idle_ms`` (no event since its latest
        arrived, nor since ``held_since``, when this worker took it), the wall
        clock less the lateness, if that is later."""
        mark = self.watermark(lateness_ms)
        if wall - max(self.heard_at, held_since) >= idle_ms:
            return max(mark, wall - lateness_ms)
        return mark
