"""Ingest: source topics in, normalized events out, keyed by profile id.

One agent per source topic. Each record is decoded and validated at the
edge; a valid event is re-keyed by its user onto kairos.internal.events (so
one user's state lives in one partition, whatever key the producer used),
and an invalid one goes to the dead-letter topic with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from streams import topics
from streams.acks import process_in_order
from streams.app import app, metrics
from streams.codecs import dumps, now_ms
from streams.deadletters import crash_worker, dead_letter
from streams.events import InvalidEvent, decode

log = logging.getLogger(__name__)

IN_FLIGHT = 2000


def normalize(source: str, message: Any) -> dict[str, Any]:
    """Decode one record; raises InvalidEvent. Gives every event an id and arrival time."""
    fallback_ts = int(message.timestamp * 1000) if message.timestamp else None
    event = decode(source, message.value, fallback_ts)
    if not event["id"]:
        # Deterministic, so a replayed record gets the same id.
        event["id"] = f"{message.topic}/{message.partition}/{message.offset}"
    event["at"] = now_ms()
    return event


def ingest_agent(source: str) -> Any:
    async def ingest(stream: Any) -> None:
        async def handle(event: Any) -> Awaitable[Any]:
            message = event.message
            try:
                normalized = normalize(source, message)
            except InvalidEvent as exc:
                return await dead_letter(message, code=exc.code, reason=exc.reason, stage="ingest")
            except Exception as exc:  # a bug must not lose the record
                log.exception("ingest failed on %s/%s", message.topic, message.offset)
                return await dead_letter(
                    message, code="internal_error", reason=f"ingest failed: {exc!r}", stage="ingest"
                )
            metrics.events_in.labels(source, normalized["kind"]).inc()
            return await topics.events.send(
                key=normalized["user"].encode(), value=dumps(normalized)
            )

        await process_in_order(stream, handle, window=IN_FLIGHT, on_failure=crash_worker)

    ingest.__name__ = ingest.__qualname__ = f"ingest_{source}"
    return app.agent(topics.SOURCES[source], name=f"kairos.ingest.{source}")(ingest)


ingest_clickstream = ingest_agent("clickstream")
ingest_crm = ingest_agent("crm")
ingest_location = ingest_agent("location")
