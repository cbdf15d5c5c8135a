"""Dead letters: a record kairos could not use, kept with why and where.

The dead letter's value is the record's original bytes and its key the
original key; headers (see streams/codecs.py) carry the reason, a short code,
the stage, and the source topic, partition and offset.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from streams.codecs import dead_letter_headers
from streams.metrics import Metrics

log = logging.getLogger(__name__)


class DeadLetters:
    """The worker's way to the dead-letter topic, and to stopping itself."""

    def __init__(self, app: Any, dlq: Any, metrics: Metrics) -> None:
        self.app = app
        self.dlq = dlq
        self.metrics = metrics

    async def send(
        self, message: Any, *, code: str, reason: str, stage: str, value: bytes | None = None
    ) -> Awaitable[Any]:
        """Send ``message`` (or ``value``, one event of it) to the dead-letter topic.

        Returns the delivery future. Sent with the producer itself, not through
        Faust's topic channel, whose per-message machinery cost a flood of
        poison records about as much again as producing their dead letters.
        """
        self.metrics.dead_letters.labels(stage, code).inc()
        headers = dead_letter_headers(
            code=code,
            reason=reason,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            stage=stage,
        )
        return await self.app.producer.send(
            self.dlq.get_topic_name(),
            message.key,
            message.value if value is None else value,
            None,
            None,
            headers,
        )

    async def crash_worker(self, exc: BaseException) -> None:
        """Stop the worker: output was lost, so nothing after it may be committed."""
        log.critical("stopping the worker: %s", exc)
        await self.app.crash(exc)
