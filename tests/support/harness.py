"""Ingest routing plus the context fold, without a broker.

The harness does what Kafka does between the two stages: records go through
the ingest router, bundles and forwarded events are delivered partition by
partition, and profiles are stored as the bytes the table would hold.

Unless a batch is given its arrival time, each event arrives when it is
stamped (its ``at`` is its ``ts``), so tests in any era of event time see
offers that are fresh, as they would be live.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition

from agents.clock import Clock
from agents.fold import Fold, Policy
from agents.guard import fold_all
from agents.ingest import Router
from agents.rules import Rules, load_rules
from agents.timers import TIMER_PREFIX
from streams.codecs import loads
from streams.keys import Partitioner
from streams.reference import ReferenceData
from streams.runtime.bundles import bundles, bundles_by_partition
from streams.settings import Settings
from streams.vectors import ProductVectors

SOURCES = {
    "clickstream": "clickstream", "crm": "crm", "location": "location", "feedback": "feedback"
}  # fmt: skip
T0 = 1_795_000_000_000


def policy(rules: Rules | None = None, vectors: ProductVectors | None = None) -> Policy:
    """The fold's policy from the test settings, with ``rules`` or the settings' rules
    file, and product ``vectors`` if given (none: no taste vectors)."""
    settings = Settings()
    rules = load_rules(settings.rules_file) if rules is None else rules
    reference = ReferenceData(settings.reference_dir)
    if vectors is not None:
        reference.vectors = vectors
    return Policy.of(settings, rules, reference)


class Harness:
    def __init__(
        self, partitions: int = 4, rules: Rules | None = None, vectors: ProductVectors | None = None
    ) -> None:
        self.policy = policy(rules, vectors)
        self.router = Router(SOURCES, partitions, int(Settings().max_future_s * 1000))
        self.clocks: dict[int, Clock] = {}  # each partition's, as the table keeps it
        self.late = self.future = 0
        self.partition_for = Partitioner(partitions)
        self.store: dict[str, bytes] = {}
        self.offsets: Counter[tuple[str, int]] = Counter()
        self.duplicates = 0
        self.merges: Counter[str] = Counter()
        self.dead: list[tuple[dict[str, Any], str, str]] = []
        self.moments: list[dict[str, Any]] = []
        self.outcomes: list[dict[str, Any]] = []
        self.unattributed: Counter[str] = Counter()
        self.router_dead = 0  # records ingest dead-lettered

    def record(self, source: str, body: dict[str, Any] | bytes, partition: int = 0) -> Any:
        value = body if isinstance(body, bytes) else orjson.dumps(body)
        offset = self.offsets[source, partition]
        self.offsets[source, partition] += 1
        return ConsumerRecord(
            source, partition, offset, T0, 0, None, value, None, 0, len(value), ()
        )

    def deliver(self, records: list[Any], arrived: int | None = None) -> None:
        """One ingest batch (arriving at ``arrived``, else each event when it is
        stamped), then every bundle and forward until nothing moves."""
        batch: dict[TopicPartition, list[Any]] = {}
        for record in records:
            batch.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        routed = self.router.route(batch, arrived)
        self.router_dead += len(routed.dead)
        queue = [b for encoded in routed.bundles.values() for b in bundles(encoded)]
        while queue:
            events = loads(queue.pop(0))
            if arrived is None:
                events = [{**event, "at": event["ts"]} for event in events]
            self.fold(events, queue)

    def fold(self, events: list[dict[str, Any]], queue: list[bytes]) -> None:
        partition = self.partition_for(events[0]["user"])
        clock = self.clocks.setdefault(partition, Clock())
        for event in events:
            assert self.partition_for(event["user"]) == self.partition_for(events[0]["user"])
        # Each pass of fold_all starts from the clock as it was, as the table's would.
        fold, changes = fold_all(lambda: Fold(self.load, self.policy, replace(clock)), events)
        self.clocks[partition] = fold.clock
        for key, value in changes:
            if value is not None and not key.startswith(TIMER_PREFIX):
                self.store[key.decode()] = value
        self.duplicates += fold.duplicates
        self.late += fold.late
        self.future += fold.future
        self.merges.update(fold.merges)
        self.dead.extend(fold.dead)
        self.moments.extend(moment for _event, moment in fold.moments)
        self.outcomes.extend(fold.outcomes)
        self.unattributed.update(fold.unattributed)
        queue.extend(b for _, b in bundles_by_partition(fold.forwards, self.partition_for))

    def load(self, key: str) -> dict[str, Any] | None:
        return loads(self.store[key]) if key in self.store else None

    def send(self, *items: tuple[str, dict[str, Any]], arrived: int | None = None) -> None:
        self.deliver([self.record(source, body) for source, body in items], arrived)

    def profile(self, user: str) -> dict[str, Any]:
        return loads(self.store[user])
