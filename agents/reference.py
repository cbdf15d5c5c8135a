"""Reference updates: stores and products changed at runtime through a topic.

Every worker reads the whole reference topic (no consumer group: each needs
every store, whichever partitions it owns), from the start at start-up, and
is not ready until it has caught up. Then it follows the topic.

A record is keyed ``store:<id>`` or ``product:<id>``; its value is the JSON
object of that store or product, as in stores.json and catalog.json, and an
empty value (a tombstone) removes it. The topic is compacted, so it keeps
the latest record per key. ``kairos reference load stores|products FILE``
writes one. A record that cannot be read goes to the dead-letter topic with
its reason, and the reference in force is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.runtime import Runtime
from streams.codecs import loads
from streams.errors import ReferenceDataError
from streams.runtime.admin import at_end, partitions_of

log = logging.getLogger(__name__)
KINDS = ("store", "product")


def read_update(key: bytes | None, value: bytes | None) -> tuple[str, str, dict[str, Any] | None]:
    """(kind, id, row or None to remove) from a record; ReferenceDataError if unreadable."""
    kind, _, item = (key or b"").decode("utf-8", "replace").partition(":")
    if kind not in KINDS or not item:
        raise ReferenceDataError(f"key must be 'store:<id>' or 'product:<id>', got {key!r}")
    if not value:
        return kind, item, None
    try:
        row = loads(value)
    except ValueError as exc:
        raise ReferenceDataError(f"{kind} {item!r} is not valid JSON: {exc}") from None
    if not isinstance(row, dict):
        raise ReferenceDataError(f"{kind} {item!r}: expected a JSON object")
    return kind, item, row


class ReferenceFollower(mode.Service):
    """Applies the reference topic to the reference data in force."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        super().__init__()

    def __post_init__(self) -> None:
        self.consumer: AIOKafkaConsumer | None = None
        self.caught_up = False
        self.settled = asyncio.Event()  # set with caught_up, for a stage that waits on it
        self.rt.ready_checks.append(lambda: self.caught_up)

    async def on_start(self) -> None:
        settings = self.rt.settings
        self.consumer = self.rt.clients.consumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.consumer_fetch_wait_ms,
            client_id=f"{settings.app_id}-reference",
        )
        await self.consumer.start()
        topic = settings.topics.reference
        partitions = await partitions_of(self.consumer, topic)
        if not partitions:
            await self.consumer.stop()
            raise ReferenceDataError(f"topic {topic!r} does not exist: run `kairos topics create`")
        self.consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await self.consumer.seek_to_beginning()

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    @mode.Service.task
    async def _follow(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            batch = await self.consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    await self.apply(record)
            if not self.caught_up and await at_end(self.consumer):
                self.caught_up = True
                self.settled.set()
                log.info("reference data caught up with %s", self.rt.settings.topics.reference)

    async def apply(self, record: Any) -> None:
        try:
            kind, item, row = read_update(record.key, record.value)
            self.rt.reference.apply(kind, item, row)
            self.rt.metrics.reference_updates.labels(
                kind, "removed" if row is None else "applied"
            ).inc()
        except ReferenceDataError as exc:
            self.rt.metrics.reference_updates.labels("unknown", "rejected").inc()
            await self.rt.dead_letters.send(
                record, code="bad_reference", reason=str(exc), stage="reference"
            )


def install(rt: Runtime) -> ReferenceFollower:
    """Register the reference follower with ``rt.app``."""
    follower = ReferenceFollower(rt)
    rt.app.service(follower)
    return follower
