"""The benchmark's workload, and the context fold's cost on it in one process.

:func:`workload` is the source events every ingest phase of bench/run.py
sends; :func:`state_cost` folds them without a broker (bench/instructions.py
counts its instructions).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson


def workload(events: int, users: int, seed: int = 7) -> list[tuple[str, dict[str, Any] | bytes]]:
    """A clickstream-heavy mix: views, pages, identifies of anonymous visitors,
    location pings, CRM orders, 1% resent duplicates and 1% invalid records."""
    rng = random.Random(seed)
    base = 1_795_000_000_000
    out: list[tuple[str, dict[str, Any] | bytes]] = []
    identified: set[int] = set()
    for n in range(events):
        u = rng.randrange(users)
        user, anon = f"u{u}", f"a{u}"
        ts = base + n
        roll = rng.random()
        if roll < 0.01:
            out.append(("clickstream", b'{"type": "track", "userId": "' + user.encode() + b'"'))
            continue
        if roll < 0.02 and out and isinstance(out[-1][1], dict):
            out.append(out[-1])  # a producer retry: same messageId
            continue
        if roll < 0.55:
            event = {
                "type": "track",
                "event": "Product Viewed",
                "properties": {"product_id": f"p-{100 + rng.randrange(18)}", "category": "running"},
            }
        elif roll < 0.75:
            event = {"type": "page", "name": "/catalog"}
        elif roll < 0.80:
            event = {"type": "identify", "traits": {"first_name": f"N{u}"}}
        elif roll < 0.97:
            out.append(
                (
                    "location",
                    {
                        "userId": user,
                        "lat": 40.0 + rng.random(),
                        "lon": -73.5,
                        "timestamp": ts,
                        "messageId": f"m{n}",
                    },
                )
            )
            continue
        else:
            out.append(
                (
                    "crm",
                    {
                        "type": "order",
                        "userId": user,
                        "order_id": f"o{n}",
                        "total": 42.5,
                        "timestamp": ts,
                        "messageId": f"m{n}",
                    },
                )
            )
            continue
        # Anonymous until the first identify; both ids after it.
        ids = {"anonymousId": anon}
        if event["type"] == "identify":
            identified.add(u)
        if u in identified:
            ids["userId"] = user
        out.append(("clickstream", {**event, **ids, "timestamp": ts, "messageId": f"m{n}"}))
    return out  # fmt: skip


# The source topics as bench/stack.py names them, and their decoders.
SOURCES = {f"kairos.{s}": s for s in ("clickstream", "crm", "location", "feedback")}


def source_batches(items: list[tuple[str, dict[str, Any] | bytes]], size: int = 5000) -> list[Any]:
    """``items`` as the ingest consumer's batches of ``size`` records each."""
    from aiokafka.structs import ConsumerRecord, TopicPartition

    batches = []
    for start in range(0, len(items), size):
        batch: dict[TopicPartition, list[Any]] = {}
        for offset, (source, event) in enumerate(items[start : start + size], start):
            value = event if isinstance(event, bytes) else orjson.dumps(event)
            record = ConsumerRecord(f"kairos.{source}", 0, offset, 1_795_000_000_000, 0, None,
                                    value, None, 0, len(value), ())  # fmt: skip
            batch.setdefault(TopicPartition(record.topic, 0), []).append(record)
        batches.append(batch)
    return batches


def embed_catalog(reference: Any) -> None:
    """Give every product the workload views a vector, as a worker's embedded
    catalog has: the taste vector's cost is in the figure (their values do
    not change it)."""
    from streams.vectors import DIM

    rng = np.random.default_rng(7)
    for n in range(18):
        reference.vectors.set(f"p-{100 + n}", rng.standard_normal(DIM))


def _loader(store: dict[str, bytes]) -> Callable[[str], Any]:
    return lambda key: orjson.loads(store[key]) if key in store else None


def state_cost(events: int, users: int, passes: int = 1) -> dict[str, float]:
    """In-process CPU of the context fold per event: decode profile, apply, encode;
    ``passes`` times over the same bundles, each from no state (bench/instructions.py
    counts the difference)."""
    import gc

    from agents.fold import Fold, Policy
    from agents.ingest import Router
    from agents.rules import load_rules
    from streams.reference import ReferenceData
    from streams.runtime.bundles import bundles
    from streams.settings import Settings

    router = Router(SOURCES, 4)
    routed = [router.route(batch) for batch in source_batches(workload(events, users))]
    encoded = [b for r in routed for _, e in sorted(r.bundles.items()) for b in bundles(e)]
    settings = Settings()
    reference = ReferenceData(None)
    embed_catalog(reference)
    policy = Policy.of(settings, load_rules(settings.rules_file), reference)
    gc.freeze()  # as the worker does after start-up
    applied = 0
    started = time.process_time()
    for _ in range(passes):
        store: dict[str, bytes] = {}
        load = _loader(store)
        for bundle in encoded:
            fold = Fold(load, policy)
            for event in orjson.loads(bundle):
                fold.apply(event)
            for key, value in fold.changes():  # the table writes, as the worker makes them
                if value:
                    store[key.decode()] = value
            applied += fold.applied
    elapsed = time.process_time() - started
    gc.unfreeze()
    return {
        "state_update_us_per_event": round(elapsed / applied * 1e6, 1),
        # The encoded profiles the last pass left, per person (no RocksDB).
        "state_bytes_per_user_fold": round(sum(map(len, store.values())) / len(store)),
    }
