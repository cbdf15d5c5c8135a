"""A producer that keeps sending through a broker's death and restart, and
counts what was acknowledged (tests/integration/test_durability.py)."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streams import clients
from streams.settings import Settings


class DurableProducer:
    """Sends page views from a thread, in windows, with acks=all and
    idempotence; a window's failed sends go again (the same messageIds) until
    the broker takes them. ``delivered`` holds each person's acknowledged
    messageIds; ``a_third_sent`` is set once a third of the events are."""

    WINDOW = 25

    def __init__(self, settings: Settings, events: list[dict[str, Any]]) -> None:
        self.settings = settings
        self.events = events
        self.delivered: defaultdict[str, set[str]] = defaultdict(set)
        self.error: BaseException | None = None
        self.a_third_sent = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="durable-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, seconds: float) -> None:
        self._thread.join(seconds)
        assert not self._thread.is_alive(), "the producer did not finish"
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Give up whatever is not delivered yet, and wait for the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._send_all())
        except BaseException as exc:  # reported by join
            self.error = exc

    async def _send_all(self) -> None:
        producer = await self._producer()
        try:
            for start in range(0, len(self.events), self.WINDOW):
                window = self.events[start : start + self.WINDOW]
                producer = await self._deliver(producer, window)
                if start >= len(self.events) // 3:
                    self.a_third_sent.set()
        finally:
            await producer.stop()

    async def _producer(self) -> AIOKafkaProducer:
        while not self._stopping.is_set():
            producer = clients.producer(
                self.settings,
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=10_000,
                retry_backoff_ms=200,
            )
            try:
                await producer.start()
                return producer
            except KafkaError:
                await producer.stop()
                await asyncio.sleep(0.5)
        raise RuntimeError("the producer was closed")

    async def _deliver(
        self, producer: AIOKafkaProducer, window: list[dict[str, Any]]
    ) -> AIOKafkaProducer:
        todo = window
        while todo and not self._stopping.is_set():
            futures, topic = [], self.settings.topics.clickstream
            for event in todo:
                value, key = orjson.dumps(event), event["userId"].encode()
                futures.append(await producer.send(topic, value, key=key))
            results = await asyncio.gather(*futures, return_exceptions=True)
            failed = [e for e, r in zip(todo, results, strict=True) if isinstance(r, Exception)]
            for event, result in zip(todo, results, strict=True):
                if not isinstance(result, Exception):
                    self.delivered[event["userId"]].add(event["messageId"])
            if failed:
                # The producer's idempotence state may not survive what failed: a new one.
                await producer.stop()
                producer = await self._producer()
            todo = failed
        return producer
