"""A cart left alone becomes a moment and an offer, from a timer that survives
the loss of the worker's disk (timers live in the changelogged profiles table)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from streams.codecs import loads, now_ms
from tests.support.stack import Worker, consume, produce, settings_for_test

pytestmark = pytest.mark.broker
NO_LLM = "http://127.0.0.1:9/v1"
MINUTE = 60_000


def track(user: str, name: str, ts: int, n: int, product: str = "") -> tuple[str, dict[str, Any]]:
    props = {"product_id": product} if product else {}
    body = {"type": "track", "event": name, "userId": user, "timestamp": ts,
            "messageId": f"{user}-{n}", "properties": props}  # fmt: skip
    return "clickstream", body


def test_an_abandoned_cart_fires_once_after_recovery(broker: str, tmp_path: Path) -> None:
    # No ticks while the carts are filled: the timers wait in the table.
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path)
    quiet = settings.model_copy(update={"sweep_interval_s": 3600.0})
    start = now_ms() - 20 * MINUTE  # rules (tests/support/rules.yaml): 5 idle minutes
    items = [
        ("clickstream", {"type": "identify", "userId": "cara", "traits": {"first_name": "Cara"},
                         "timestamp": start, "messageId": "cara-0"}),
        track("cara", "Product Added", start + MINUTE, 1, "p-101"),
        track("cara", "Product Added", start + 2 * MINUTE, 2, "p-203"),
        track("olaf", "Product Added", start + MINUTE, 1, "p-102"),
        track("olaf", "Order Completed", start + 3 * MINUTE, 2),
    ]  # fmt: skip
    worker = Worker(quiet)
    worker.start()
    try:
        asyncio.run(produce(settings, items))
        assert worker.wait_for("kairos_state_updates_total", len(items)) == len(items)
        worker.stop()
        shutil.rmtree(settings.data_dir / "worker")  # the timers come back from the changelog

        worker = Worker(settings.model_copy(update={"sweep_interval_s": 0.5}))
        worker.start()
        moments_topic = f"{settings.topics.internal_prefix}moments"
        records = asyncio.run(consume(settings, moments_topic, lambda r: len(r) >= 1, 30))
        [record] = records
        moment = loads(record.value)
        assert (moment["type"], moment["user"], moment["cart"]) == (
            "cart_abandoned", "cara", ["p-101", "p-203"],
        )  # fmt: skip
        assert moment["event_ts"] == start + 2 * MINUTE + 5 * MINUTE

        [record] = asyncio.run(consume(settings, settings.topics.offers, lambda r: len(r) >= 1, 30))
        offer = loads(record.value)
        assert offer["user"] == "cara" and offer["store"] is None
        assert offer["moment"]["type"] == "cart_abandoned"
        assert offer["headline"] == "Still thinking it over, Cara?"
        assert offer["context_used"][0] == "trait:name"

        time.sleep(2)  # more ticks: the timer is spent and the cart fired once
        again = asyncio.run(consume(settings, moments_topic, lambda r: len(r) > 1, 3))
        assert len(again) == 1
    finally:
        worker.stop()
