"""Faust's Kafka transport, with fixes for the embedded broker that Faust
and aiokafka have no setting for.

Fetch wait. Faust builds its aiokafka consumer with
``fetch_max_wait_ms=1500``. Kafka answers a fetch as soon as data arrives,
so that is harmless there; the embedded broker polls, and under steady
traffic a record waited about half of that, ~360 ms (p50), on each hop
between agents. ``KAIROS_CONSUMER_FETCH_WAIT_MS`` sets it.

End offsets. Table recovery reads a changelog partition up to its end
offset, which Faust asks for with ListOffsets. The embedded broker answers
wrongly after batched produce (the first offset of the last batch + 1), so
recovery would stop short, or fail with "persisted offset is higher than the
last offset". The high watermark in a Fetch response is right on every
broker, so :func:`fetched_end_offsets` reads it there. On Kafka the two
agree, and the extra fetch costs one round trip per recovery.

Leaving a group. The embedded broker numbers a group's first generation 0;
Kafka starts at 1. aiokafka sends LeaveGroup on stop only for a generation
above 0, so a worker stopped in a group's first generation stayed a member
until its session expired, and the next worker to join was rebalanced
again a few seconds after its first join: 8 s more to ready after a
restart. :func:`leave_groups_from_generation_zero` (applied on import) makes
it leave at generation 0 too; on Kafka nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.errors import KafkaError
from aiokafka.protocol.group import LeaveGroupRequest
from faust.transport.drivers import aiokafka as driver

END_OFFSET_TIMEOUT_S = 30.0
log = logging.getLogger(__name__)


def leave_groups_from_generation_zero() -> None:
    """aiokafka's ``_maybe_leave_group`` (0.14.0), leaving at generation 0 as well."""

    async def maybe_leave_group(self: Any) -> None:
        if self.generation >= 0 and self._group_instance_id is None:
            # One attempt, as aiokafka makes: a member that is not told to
            # leave is removed when its session expires.
            try:
                await self._send_req(LeaveGroupRequest(self.group_id, self.member_id))
            except KafkaError as err:
                log.error("LeaveGroup request failed: %s", err)
            else:
                log.info("LeaveGroup request succeeded")
        self.reset_generation()

    GroupCoordinator._maybe_leave_group = maybe_leave_group


leave_groups_from_generation_zero()


async def fetched_end_offsets(
    bootstrap_servers: str | list[str], listed: Mapping[Any, int], fetch_wait_ms: int
) -> dict[Any, int]:
    """End offsets of ``listed`` (tp -> ListOffsets answer), taken from Fetch responses.

    Fetches from just before the listed end; the response's high watermark
    is the true end offset. An empty partition (listed 0) needs no fetch.
    """
    result = dict(listed)
    wanted = {tp: offset for tp, offset in listed.items() if offset > 0}
    if not wanted:
        return result
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=fetch_wait_ms,
        max_partition_fetch_bytes=64 * 1024,
    )
    await consumer.start()
    try:
        parts = {TopicPartition(tp.topic, tp.partition): tp for tp in wanted}
        consumer.assign(list(parts))
        for part, tp in parts.items():
            consumer.seek(part, wanted[tp] - 1)
        pending = set(parts)
        deadline = asyncio.get_running_loop().time() + END_OFFSET_TIMEOUT_S
        while pending:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"no fetch response for {sorted(pending)}")
            await consumer.getmany(*pending, timeout_ms=200, max_records=1)
            for part in list(pending):
                highwater = consumer.highwater(part)
                if highwater is not None:
                    result[parts[part]] = max(highwater, wanted[parts[part]])
                    pending.discard(part)
    finally:
        await consumer.stop()
    return result


def app_class(fetch_wait_ms: int) -> type[faust.App]:
    """A faust.App subclass with both fixes."""

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_wait_ms
            return consumer

        async def _highwaters(self, partitions: Iterable[Any]) -> Mapping[Any, int]:
            listed = await super()._highwaters(list(partitions))
            if self.consumer.in_transaction:
                return listed
            servers = self._ensure_consumer()._client._bootstrap_servers
            return await fetched_end_offsets(servers, listed, fetch_wait_ms)

    class FixedConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        Consumer = FixedConsumer

    class App(faust.App):
        def _new_transport(self) -> Any:
            return Transport(self.conf.broker_consumer, self)

    return App
