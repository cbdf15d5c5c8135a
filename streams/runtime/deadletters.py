"""Dead letters: a record kairos could not use, kept with why and where.

The dead letter's value is the record's original bytes and its key the
original key; headers (see streams/codecs.py) carry the reason, a short code,
the stage, and the source topic, partition and offset.

A record larger than a dead letter can carry (a source topic may allow
records of many MiB; the worker's producer sends at most its
``max_request_size``, and the dead-letter topic takes at most its
``max.message.bytes``) keeps its first :attr:`DeadLetters.limit` bytes, its
size in the ``kairos.dlq.size`` header and the reason saying so: a record
that cannot be carried whole still leaves a trace, and never stops the
worker, whose restart would read the same record again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from streams.codecs import DLQ_SIZE, dead_letter_headers
from streams.metrics import Metrics
from streams.runtime.topics import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

# Bytes of a dead letter kept for its key, headers and the record batch's
# framing: the reason is cut to MAX_REASON characters and a key longer than
# MAX_KEY bytes is dropped, so these never take more.
HEADROOM = 16 * 1024
MAX_REASON = 2000
MAX_KEY = 1024
# The head a dead letter the broker refused all the same carries (a
# dead-letter topic created elsewhere, with a lower max.message.bytes).
FALLBACK_HEAD = 1024
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)

Letter = tuple[bytes | None, list[tuple[str, bytes]]]


def too_large(exc: BaseException) -> bool:
    """Was a record refused for its size? (Faust's producer wraps the
    client's error in a ProducerSendError.)"""
    return isinstance(exc, TOO_LARGE) or isinstance(exc.__cause__, TOO_LARGE)


def value_limit(max_request_size: int, max_message_bytes: int = MAX_MESSAGE_BYTES) -> int:
    """The most bytes of a record's value a dead letter carries."""
    return min(max_request_size, max_message_bytes) - HEADROOM


def letter(where: Any, value: bytes | None, limit: int, **why: str) -> Letter:
    """A dead letter's value and headers: ``value`` whole, or its first
    ``limit`` bytes with its size. ``why`` is the code, reason and stage."""
    reason = why["reason"][:MAX_REASON]
    cut = value is not None and len(value) > limit
    if cut:
        reason += (
            f"; the record is {len(value or b'')} bytes, more than a dead letter "
            f"carries: this one holds its first {limit}"
        )
    headers = dead_letter_headers(
        code=why["code"], reason=reason, stage=why["stage"],
        topic=where.topic, partition=where.partition, offset=where.offset,
    )  # fmt: skip
    if value is not None and cut:
        headers.append((DLQ_SIZE, str(len(value)).encode()))
        value = value[:limit]
    return value, headers


class DeadLetters:
    """The worker's way to the dead-letter topic, and to stopping itself."""

    def __init__(self, app: Any, dlq: Any, metrics: Metrics) -> None:
        self.app = app
        self.dlq = dlq
        self.metrics = metrics
        self.limit = value_limit(app.conf.producer_max_request_size)
        self._retrying: set[asyncio.Task[None]] = set()

    async def send(
        self, message: Any, *, code: str, reason: str, stage: str, value: bytes | None = None
    ) -> Awaitable[Any]:
        """Send ``message`` (or ``value``, one event of it) to the dead-letter topic.

        Returns the delivery future. Sent with the producer itself, not through
        Faust's topic channel, whose per-message machinery cost a flood of
        poison records about as much again as producing their dead letters.
        """
        self.metrics.dead_letters.labels(stage, code).inc()
        value = message.value if value is None else value
        key = message.key if message.key is None or len(message.key) <= MAX_KEY else None

        def carried(limit: int) -> Letter:
            return letter(message, value, limit, code=code, reason=reason, stage=stage)

        try:
            sent = await self._produce(key, carried(self.limit))
        except Exception as exc:
            if not too_large(exc):
                raise
            # The client's own check, before sending: a producer whose
            # max_request_size is below the one the limit was sized from.
            return await self._produce(key, self._smaller(carried, exc))
        return self._or_smaller(sent, key, carried)

    async def _produce(self, key: bytes | None, dead: Letter) -> Any:
        value, headers = dead
        topic = self.dlq.get_topic_name()
        return await self.app.producer.send(topic, key, value, None, None, headers)

    def _or_smaller(
        self, sent: asyncio.Future[Any], key: bytes | None, carried: Callable[[int], Letter]
    ) -> asyncio.Future[Any]:
        """``sent``'s outcome, or, if the broker refused it as too large, that
        of a smaller dead letter. A callback, not a task: a flood of poison
        makes one of these per record."""
        out: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(future: asyncio.Future[Any]) -> None:
            exc = None if future.cancelled() else future.exception()
            if future.cancelled():
                out.cancel()
            elif exc is not None and too_large(exc):
                task = asyncio.ensure_future(self._again(out, key, self._smaller(carried, exc)))
                self._retrying.add(task)  # held until done: the loop keeps only weak ones
                task.add_done_callback(self._retrying.discard)
            elif exc is not None:
                out.set_exception(exc)
            else:
                out.set_result(future.result())

        sent.add_done_callback(done)
        return out

    async def _again(self, out: asyncio.Future[Any], key: bytes | None, dead: Letter) -> None:
        try:
            out.set_result(await (await self._produce(key, dead)))
        except Exception as exc:
            out.set_exception(exc)

    def _smaller(self, carried: Callable[[int], Letter], exc: BaseException) -> Letter:
        log.warning("a dead letter was refused as too large (%r): sending its first %d bytes",
                    exc, FALLBACK_HEAD)  # fmt: skip
        return carried(FALLBACK_HEAD)

    async def crash_worker(self, exc: BaseException) -> None:
        """Stop the worker: output was lost, so nothing after it may be committed."""
        log.critical("stopping the worker: %s", exc)
        await self.app.crash(exc)
