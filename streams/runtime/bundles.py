"""Bundles: many encoded events in one Kafka message, a JSON array.

kairos.internal.events carries bundles, each holding events whose profile
ids live in the message's partition. A bundle is at most
:data:`MAX_BUNDLE_BYTES` (well under Kafka's default 1 MiB message limit)
unless a single event is larger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from streams.codecs import dumps
from streams.domain import Event

MAX_BUNDLE_BYTES = 512 * 1024


def bundles(events: Iterable[bytes], limit: int = MAX_BUNDLE_BYTES) -> Iterator[bytes]:
    """JSON arrays of already-encoded events, each at most ``limit`` bytes if it can be."""
    chunk: list[bytes] = []
    size = 2
    for event in events:
        if chunk and size + len(event) + 1 > limit:
            yield b"[" + b",".join(chunk) + b"]"
            chunk, size = [], 2
        chunk.append(event)
        size += len(event) + 1
    if chunk:
        yield b"[" + b",".join(chunk) + b"]"


def bundles_by_partition(
    events: Iterable[Event], partition_for: Callable[[str], int]
) -> Iterator[tuple[int, bytes]]:
    """Normalized events as (partition, bundle), grouped by their profile id's partition."""
    grouped: dict[int, list[bytes]] = {}
    for event in events:
        grouped.setdefault(partition_for(event["user"]), []).append(dumps(event))
    for partition, encoded in grouped.items():
        for bundle in bundles(encoded):
            yield partition, bundle
