"""The worker's Kafka clients leave their consumer group when they stop."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import streams.transport  # noqa: F401 (leaving at generation 0)

pytestmark = pytest.mark.broker


async def members_after_stop(broker: str) -> tuple[int, list[Any]]:
    tag = uuid.uuid4().hex[:8]
    topic, group = f"leave-{tag}", f"group-{tag}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker, group_id=group,
            session_timeout_ms=6000, heartbeat_interval_ms=1000,
        )  # fmt: skip
        await consumer.start()
        try:
            for _ in range(200):
                if consumer.assignment():
                    break
                await asyncio.sleep(0.05)
            assert consumer.assignment(), "the consumer was never assigned its partitions"
            generation = consumer._coordinator.generation
        finally:
            await consumer.stop()
        [described] = await admin.describe_consumer_groups([group])
        *_, members = described.groups[0]  # (error, id, state, protocol type, protocol, members)
        return generation, list(members)
    finally:
        await admin.close()


def test_a_stopped_consumer_leaves_its_group_at_once(broker: str) -> None:
    """A member that does not leave stays until its session expires, and the
    next worker's join is followed by a rebalance (seconds more to ready)."""
    generation, members = asyncio.run(members_after_stop(broker))
    assert generation == 0  # the embedded broker's first generation; Kafka's is 1
    assert members == []
