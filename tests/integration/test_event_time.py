"""A backlog replayed on event time: produced, two hours old, before the worker starts.

The cart that was ordered ten minutes later (in event time) gets no moment,
whatever the wall clock said while the backlog went through; the cart
nobody ordered gets one once the partition falls quiet (the wall-clock
fallback). A store visit two hours old is recorded as a stale moment and
sent no offer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streams.codecs import loads, now_ms
from streams.reference import load_reference
from streams.runtime.admin import create_topics
from tests.support.stack import Worker, consume, labelled, produce, settings_for_test

pytestmark = pytest.mark.broker
NO_LLM = "http://127.0.0.1:9/v1"
MINUTE = 60_000
FLATIRON = load_reference().stores["s-flatiron"]
RULES = """
version: 1
rules:
  store_entry: {holdout_pct: 0}
  cart_abandoned: {holdout_pct: 0, idle_minutes: 30}
  win_back: {holdout_pct: 0}
"""


def track(user: str, name: str, ts: int, n: int, **props: Any) -> tuple[str, dict[str, Any]]:
    body = {"type": "track", "event": name, "userId": user, "timestamp": ts,
            "messageId": f"{user}-{n}", "properties": props}  # fmt: skip
    return "clickstream", body


def test_a_replayed_backlog_fires_timers_on_event_time(broker: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path, partitions=1)
    # One record per ingest batch, ticks every half second: the wall clock
    # gets every chance to judge a cart between its add and its order.
    changed = {"rules_file": rules, "ingest_batch_max": 1, "sweep_interval_s": 0.5,
               "timer_idle_s": 5.0}  # fmt: skip
    settings = settings.model_copy(update=changed)
    t = now_ms() - 120 * MINUTE
    backlog = [
        track("olga", "Product Added", t, 1, product_id="p-101"),
        track("cara", "Product Added", t + MINUTE, 1, product_id="p-203"),
        track("sam", "Product Viewed", t, 1, product_id="p-101", category="running"),
        ("location", {"userId": "sam", "lat": FLATIRON.lat, "lon": FLATIRON.lon,
                      "timestamp": t + MINUTE, "messageId": "sam-2"}),
        track("olga", "Order Completed", t + 10 * MINUTE, 2, order_id="o-1", total=20.0),
    ]  # fmt: skip
    asyncio.run(create_topics(settings))
    asyncio.run(produce(settings, backlog))
    worker = Worker(settings)
    worker.start()
    try:
        moments_topic = f"{settings.topics.internal_prefix}moments"
        records = asyncio.run(consume(settings, moments_topic, lambda r: len(r) >= 2, 60))
        moments = [loads(r.value) for r in records]
        by_user = {m["user"]: m for m in moments}
        assert len(moments) == 2 and set(by_user) == {"cara", "sam"}  # none for olga
        cart = by_user["cara"]
        assert (cart["type"], cart["cart"], cart.get("suppressed")) == (
            "cart_abandoned", ["p-203"], None,
        )  # fmt: skip
        assert cart["event_ts"] == t + MINUTE + 30 * MINUTE  # judged on event time
        visit = by_user["sam"]
        assert (visit["type"], visit["suppressed"]) == ("store_entry", "stale")

        offers = asyncio.run(consume(settings, settings.topics.offers, bool, 60))
        assert [loads(r.value)["user"] for r in offers] == ["cara"]
        worker.wait_for("kairos_offer_moments_total", 2)
        outcomes = labelled(worker.metrics(), "kairos_offer_moments_total", "outcome")
        assert outcomes == {"offered": 1.0, "suppressed": 1.0}
        assert worker.counter("kairos_dead_letters_total") == 0
        assert worker.counter("kairos_state_updates_total") == len(backlog)
    finally:
        worker.stop()
