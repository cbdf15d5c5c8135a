"""Time-driven moments: a cart left alone, a shopper who stays away. Each comes
from a timer that survives the loss of the worker's disk (timers live in the
changelogged profiles table)."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from streams.codecs import loads, now_ms
from streams.reference import load_reference
from tests.support.stack import Worker, consume, produce, settings_for_test

pytestmark = pytest.mark.broker
NO_LLM = "http://127.0.0.1:9/v1"
MINUTE = 60_000
DAY = 86_400_000
FLATIRON = load_reference().stores["s-flatiron"]


def track(user: str, name: str, ts: int, n: int, product: str = "") -> tuple[str, dict[str, Any]]:
    props = {"product_id": product} if product else {}
    body = {"type": "track", "event": name, "userId": user, "timestamp": ts,
            "messageId": f"{user}-{n}", "properties": props}  # fmt: skip
    return "clickstream", body


RULES = """
version: 1
rules:
  store_entry: {holdout_pct: 0}
  cart_abandoned: {holdout_pct: 0, idle_minutes: 5}
  win_back: {holdout_pct: 0, lapsed_days: 1}
"""


def test_timed_moments_fire_once_after_recovery(broker: str, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path)
    settings = settings.model_copy(update={"rules_file": rules})
    # No ticks while the carts are filled: the timers wait in the table.
    quiet = settings.model_copy(update={"sweep_interval_s": 3600.0})
    start = now_ms() - 20 * MINUTE  # rules (tests/support/rules.yaml): 5 idle minutes
    items = [
        # Cara takes email, not push: her reminder goes by email.
        ("clickstream", {"type": "identify", "userId": "cara", "messageId": "cara-0",
                         "traits": {"first_name": "Cara", "push_opt_in": False,
                                    "email_opt_in": True}, "timestamp": start}),
        track("cara", "Product Added", start + MINUTE, 1, "p-101"),
        track("cara", "Product Added", start + 2 * MINUTE, 2, "p-203"),
        track("olaf", "Product Added", start + MINUTE, 1, "p-102"),
        track("olaf", "Order Completed", start + 3 * MINUTE, 2),
        # Vera was at Flatiron two days ago and has not been back since.
        ("location", {"userId": "vera", "lat": FLATIRON.lat, "lon": FLATIRON.lon,
                      "timestamp": start - 2 * DAY, "messageId": "vera-1"}),
    ]  # fmt: skip
    worker = Worker(quiet)
    worker.start()
    try:
        asyncio.run(produce(settings, items))
        assert worker.wait_for("kairos_state_updates_total", len(items)) == len(items)
        worker.stop()
        shutil.rmtree(settings.data_dir / "worker")  # the timers come back from the changelog

        # Nothing arrives now: the timers go by the wall clock once the partition is quiet.
        worker = Worker(settings.model_copy(update={"sweep_interval_s": 0.5, "timer_idle_s": 1.0}))
        worker.start()
        moments_topic = f"{settings.topics.internal_prefix}moments"
        records = asyncio.run(consume(settings, moments_topic, lambda r: len(r) >= 2, 30))
        moments = {loads(r.value)["type"]: loads(r.value) for r in records}
        assert len(records) == 2 and set(moments) == {"cart_abandoned", "win_back"}
        cart = moments["cart_abandoned"]
        assert (cart["user"], cart["cart"]) == ("cara", ["p-101", "p-203"])
        assert cart["event_ts"] == start + 2 * MINUTE + 5 * MINUTE
        # Two events are no habit yet: due at once.
        assert cart["send_at"] == cart["event_ts"] and cart["channel"] == "email"
        back = moments["win_back"]
        assert (back["user"], back["store_id"]) == ("vera", "s-flatiron")
        assert back["event_ts"] == start - 2 * DAY + DAY

        records = asyncio.run(consume(settings, settings.topics.offers, lambda r: len(r) >= 2, 30))
        offers = {loads(r.value)["user"]: loads(r.value) for r in records}
        assert offers["cara"]["store"] is None
        assert offers["cara"]["headline"] == "Still thinking it over, Cara?"
        assert offers["cara"]["context_used"][0] == "trait:name"
        assert (offers["cara"]["channel"], offers["cara"]["channel_reason"]) == ("email", "only")
        assert (offers["vera"]["channel"], offers["vera"]["channel_reason"]) == ("push", "only")
        assert offers["vera"]["headline"] == "We miss you at Flatiron"
        assert offers["vera"]["moment"]["type"] == "win_back"

        time.sleep(2)  # more ticks: the timers are spent and each moment fired once
        again = asyncio.run(consume(settings, moments_topic, lambda r: len(r) > 2, 3))
        assert len(again) == 2
    finally:
        worker.stop()
