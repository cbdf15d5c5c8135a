"""The producer path: how kairos's own tools write events to the source topics.

Events are JSON with a ``timestamp`` (event time) and a ``messageId``; the
message key is the user id when there is one, as a producer following the
contract would do (kairos itself never relies on it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from streams.codecs import dumps
from streams.settings import Settings


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventProducer:
    """Writes events to the topic for their source (clickstream, crm, location)."""

    def __init__(self, settings: Settings) -> None:
        self._topics = {
            "clickstream": settings.topics.clickstream,
            "crm": settings.topics.crm,
            "location": settings.topics.location,
            "feedback": settings.topics.feedback,
        }
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, linger_ms=5, acks=1
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, source: str, event: dict[str, Any]) -> None:
        """Stamp and send one event (a dict); the event time is now unless given."""
        event.setdefault("timestamp", iso_now())
        event.setdefault("messageId", str(uuid.uuid4()))
        await self.send_raw(source, dumps(event), event.get("userId"))

    async def send_raw(self, source: str, value: bytes, user: str | None = None) -> None:
        key = user.encode() if isinstance(user, str) else None
        await self._producer.send(self._topics[source], value, key=key)

    async def flush(self) -> None:
        await self._producer.flush()
