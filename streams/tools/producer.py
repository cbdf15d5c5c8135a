"""The producer path: how kairos's own tools write events to the source topics.

Events are JSON with a ``timestamp`` (event time) and a ``messageId``; the
message key is the user id, else the anonymous id, so one person's events
keep their order in one partition (kairos itself never relies on it).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from streams import clients
from streams.codecs import dumps
from streams.settings import Settings
from streams.tools.traffic import Planned


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventProducer:
    """Writes events to the topic for their source (clickstream, crm, location)."""

    def __init__(self, settings: Settings, linger_ms: int = 5) -> None:
        self._topics = {
            "clickstream": settings.topics.clickstream,
            "crm": settings.topics.crm,
            "location": settings.topics.location,
            "feedback": settings.topics.feedback,
        }
        self._producer = clients.producer(
            settings,
            linger_ms=linger_ms,
            acks="all",
            enable_idempotence=True,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, source: str, event: dict[str, Any]) -> None:
        """Stamp and send one event (a dict); the event time is now unless given."""
        event.setdefault("timestamp", iso_now())
        event.setdefault("messageId", str(uuid.uuid4()))
        await self.send_raw(source, dumps(event), event.get("userId") or event.get("anonymousId"))

    async def send_raw(self, source: str, value: bytes, user: str | None = None) -> None:
        key = user.encode() if isinstance(user, str) else None
        await self._producer.send(self._topics[source], value, key=key)

    async def flush(self) -> None:
        await self._producer.flush()


async def replay(
    settings: Settings,
    planned: Iterable[Planned],
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Send each planned event at its time; return how many were sent."""
    producer = EventProducer(settings)
    await producer.start()
    start = time.monotonic()
    sent = 0
    try:
        for item in planned:
            delay = item.at - (time.monotonic() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            if isinstance(item.event, bytes):
                await producer.send_raw(item.source, item.event)
            else:
                await producer.send(item.source, dict(item.event))
            sent += 1
            if on_sent:
                on_sent(sent)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


TYPE_SOURCES = {
    "location": "location",
    "traits": "crm",
    "order": "crm",
    "ticket": "crm",
    "loyalty": "crm",
    "feedback": "feedback",
}


def route(line: bytes) -> str:
    """The source topic for one JSON line, by its ``type`` (clickstream if unknown).

    A line that does not parse still goes to clickstream: kairos, not the
    producer, decides it is invalid, and keeps it as a dead letter with the reason.
    """
    try:
        kind = orjson.loads(line).get("type")
    except (orjson.JSONDecodeError, AttributeError):
        return "clickstream"
    return TYPE_SOURCES.get(kind, "clickstream") if isinstance(kind, str) else "clickstream"


USER_COLUMNS = ("userId", "user_id")


def plan_traits(path: Path, timestamp: str, rate: float | None = None) -> Iterator[Planned]:
    """A batch load of traits as CRM ``traits`` records, one per row or line.

    CSV (by extension ``.csv``, ``.csv.gz``): a ``userId`` or ``user_id``
    column and one column per trait; numbers become numbers, ``true`` and
    ``false`` booleans, and empty cells are left out. JSON lines: either
    ``{"userId": ..., "traits": {...}}`` or a flat object of traits with a
    ``userId`` or ``user_id``. Every record gets ``timestamp`` (when the
    traits were true) unless it has its own, so the load does not overwrite
    newer values. A row without a user still goes out, and kairos
    dead-letters it with the reason; a line that is not JSON goes out as it
    is, for the same.
    """
    rows = _csv_rows(path) if ".csv" in path.suffixes else _json_rows(path)
    for n, row in enumerate(rows):
        at = n / rate if rate else 0.0
        if isinstance(row, bytes):
            yield Planned(at, "crm", row)
            continue
        if isinstance(row.get("traits"), dict):
            traits = row["traits"]
        else:
            traits = {k: v for k, v in row.items() if k not in (*USER_COLUMNS, "timestamp")}
        user = next((row[c] for c in USER_COLUMNS if row.get(c) not in (None, "")), None)
        record: dict[str, Any] = {"type": "traits", "traits": traits}
        record["timestamp"] = row.get("timestamp") or timestamp
        if user is not None:
            record["userId"] = user
        yield Planned(at, "crm", record)


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    with _open(path) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
        for row in csv.DictReader(text):
            yield {k: _cell(v) for k, v in row.items() if k and v not in (None, "")}


def _cell(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _json_rows(path: Path) -> Iterator[dict[str, Any] | bytes]:
    with _open(path) as lines:
        for line in lines:
            raw = line.strip()
            if not raw:
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError:
                row = None
            yield row if isinstance(row, dict) else raw


def _open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def count_lines(path: Path) -> int:
    with _open(path) as lines:
        return sum(1 for line in lines if line.strip())


def plan_file(path: Path, source: str = "auto", rate: float | None = None) -> Iterator[Planned]:
    """One planned event per non-empty line, sent as its original bytes.

    ``source`` "auto" routes each line by its type; ``rate`` spaces the events
    (events per second), or sends them as fast as the producer goes.
    """
    with _open(path) as lines:
        n = 0
        for line in lines:
            raw = line.strip()
            if not raw:
                continue
            at = n / rate if rate else 0.0
            yield Planned(at, route(raw) if source == "auto" else source, raw)
            n += 1


async def send_reference(settings: Settings, kind: str, rows: list[dict[str, Any]]) -> None:
    """Each row to the reference topic, keyed ``kind:id``; delivered when this returns."""
    from streams.runtime.admin import connect_admin

    await (await connect_admin(settings)).close()  # a clear error if Kafka is not there
    producer = clients.producer(settings, acks="all")
    await producer.start()
    try:
        for row in rows:
            await producer.send(settings.topics.reference, dumps(row),
                                key=f"{kind}:{row['id']}".encode())  # fmt: skip
        await producer.flush()
    finally:
        await producer.stop()
