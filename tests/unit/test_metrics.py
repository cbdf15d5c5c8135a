"""The metrics helpers, held to prometheus_client's own behaviour."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Histogram

from streams.metrics import FRESHNESS_BUCKETS, observe_all


def samples(histogram: Histogram) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for m in histogram.collect() for s in m.samples
            if not s.name.endswith("_created")]  # fmt: skip


def test_observing_all_at_once_leaves_what_observing_each_leaves() -> None:
    rng = random.Random(3)
    # Bounds themselves, either side of them, zero, and past the last bound.
    amounts = [*FRESHNESS_BUCKETS, *(b + 1e-9 for b in FRESHNESS_BUCKETS), 0.0, 7200.0]
    amounts += [rng.randrange(0, 4_000_000) / 1000 for _ in range(2000)]
    each, together = (
        Histogram(name, "h", ["family"], buckets=FRESHNESS_BUCKETS, registry=CollectorRegistry())
        for name in ("each", "together")
    )
    for amount in amounts:
        each.labels("windows").observe(amount)
    observe_all(together.labels("windows"), amounts[:700])
    observe_all(together.labels("windows"), amounts[700:])
    observe_all(together.labels("traits"), [])
    each.labels("traits")
    renamed = [(name.replace("together", "each"), labels, value)
               for name, labels, value in samples(together)]  # fmt: skip
    assert renamed == samples(each)  # counts, buckets, and the sum to the last bit
