"""Wire formats: orjson for every kairos payload, headers for dead letters.

A dead letter keeps the original bytes as its value, untouched, so it can be
inspected or replayed as it was; why and where it failed travel in headers
(as Kafka Connect's dead-letter queue does).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

DLQ_REASON = "kairos.dlq.reason"
DLQ_CODE = "kairos.dlq.code"
DLQ_TOPIC = "kairos.dlq.topic"
DLQ_PARTITION = "kairos.dlq.partition"
DLQ_OFFSET = "kairos.dlq.offset"
DLQ_STAGE = "kairos.dlq.stage"
DLQ_FAILED_AT = "kairos.dlq.failed_at_ms"
# Set on a dead letter that carries only the head of its record: the record's size.
DLQ_SIZE = "kairos.dlq.size"


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def dead_letter_headers(
    *, code: str, reason: str, topic: str, partition: int, offset: int, stage: str
) -> list[tuple[str, bytes]]:
    """Headers that say why and where an event failed."""
    return [
        (DLQ_CODE, code.encode()),
        (DLQ_REASON, reason.encode()),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
        (DLQ_STAGE, stage.encode()),
        (DLQ_FAILED_AT, str(now_ms()).encode()),
    ]


def header_map(headers: Any) -> dict[str, str]:
    """Headers of a consumed record as a dict of text (last value wins)."""
    items = headers.items() if isinstance(headers, dict) else headers or ()
    return {key: bytes(value).decode("utf-8", "replace") for key, value in items}
