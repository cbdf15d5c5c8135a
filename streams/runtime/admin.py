"""Topic administration: create every declared topic, check they exist; and
whether a consumer has read its topics to their end."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError

from streams import clients
from streams.errors import BrokerUnavailable
from streams.settings import Settings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


async def connect_admin(settings: Settings) -> AIOKafkaAdminClient:
    """An admin client, retrying with exponential backoff (0.5 s, 1 s, 2 s...)
    for as long as ``broker_wait_s`` allows."""
    # Each failed attempt is reported once, below; aiokafka would add its own.
    client_log = logging.getLogger("aiokafka")
    level = client_log.level
    client_log.setLevel(logging.CRITICAL)
    try:
        return await _connect(settings, backoff(settings.broker_wait_s))
    finally:
        client_log.setLevel(level)


def backoff(budget_s: float) -> list[float]:
    """The waits between attempts: 0.5 s, doubling, as many as fit in ``budget_s``."""
    waits: list[float] = []
    while sum(waits) + 0.5 * 2 ** len(waits) <= budget_s:
        waits.append(0.5 * 2 ** len(waits))
    return waits


async def _connect(settings: Settings, waits: list[float]) -> AIOKafkaAdminClient:
    attempts = len(waits) + 1
    for attempt in range(1, attempts + 1):
        admin = clients.admin(settings, request_timeout_ms=10_000)
        try:
            await admin.start()
            return admin
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            await admin.close()
            refused = await clients.refusal(settings)
            if refused:  # a password or a certificate: no retry fixes it
                raise BrokerUnavailable(refused) from None
            if attempt == attempts:
                hint = (
                    "; KAIROS_BROKER_URL is unset, so start the embedded broker with "
                    "`kairos broker` or point KAIROS_BROKER_URL at Kafka"
                    if settings.embedded_broker
                    else ""
                )
                raise BrokerUnavailable(
                    f"cannot reach Kafka at {settings.bootstrap_servers} "
                    f"after {attempts} attempts: {exc}{hint}"
                ) from None
            log.warning(
                "Kafka at %s not reachable (%s); retrying in %.1f s",
                settings.bootstrap_servers,
                exc,
                waits[attempt - 1],
            )
            await asyncio.sleep(waits[attempt - 1])
    raise AssertionError("unreachable")


async def create_topics(settings: Settings) -> list[str]:
    """Create the declared topics that do not exist yet; return their names."""
    from streams.runtime.topics import topic_specs

    admin = await connect_admin(settings)
    try:
        existing = set(await admin.list_topics())
        wanted = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if not wanted:
            return []
        response = await admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    spec.partitions,
                    settings.replication_factor,
                    topic_configs=spec.config,
                )
                for spec in wanted
            ]
        )
        failed = [
            f"{name}: {message or code}"
            for name, code, message in response.topic_errors
            if code not in (0, TOPIC_ALREADY_EXISTS)
        ]
        if failed:
            raise KafkaError("could not create topics: " + "; ".join(failed))
        return [spec.name for spec in wanted]
    finally:
        await admin.close()


async def missing_topics(settings: Settings) -> list[str]:
    """Declared topics the cluster does not have."""
    from streams.runtime.topics import topic_specs

    admin = await connect_admin(settings)
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [spec.name for spec in topic_specs(settings) if spec.name not in existing]


async def partitions_of(consumer: Any, topic: str) -> set[int]:
    """The partitions of ``topic`` (empty if it does not exist), asked of the
    cluster: a consumer with no subscription holds no metadata for it yet."""
    client = consumer._client
    client.add_topic(topic)
    await client.force_metadata_update()
    return client.cluster.partitions_for_topic(topic) or set()


async def at_end(consumer: Any) -> bool:
    """Is ``consumer`` at the high watermark of each partition it has, as its last
    fetch reported it? (No extra round trip: every fetch response carries it.)
    False before it has partitions or a fetch for each."""
    partitions = consumer.assignment()
    if not partitions:
        return False
    for tp in partitions:
        end = consumer.highwater(tp)
        if end is None or await consumer.position(tp) < end:
            return False
    return True
