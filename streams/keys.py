"""Which partition a profile id lives in.

kairos.internal.events, the profiles changelog and every topic keyed by
profile id share one partition count, and a key's partition is Kafka's
default: murmur2 of the key's UTF-8 bytes, as the Java client and aiokafka
compute it. Ingest sends one bundle per partition, with the partition given
explicitly; single events sent with a key land in the same place.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

_CACHE_MAX = 200_000


class Partitioner:
    """murmur2 partition of a text key, cached (bounded) for hot keys."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._cache: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        partition = self._cache.get(key)
        if partition is None:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            partition = (murmur2(key.encode()) & 0x7FFFFFFF) % self.partitions
            self._cache[key] = partition
        return partition
