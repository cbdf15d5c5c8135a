"""One scripted store visit, run through a real worker, broker and vLLM."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.coupons import coupon_code
from agents.moments import moment_id, offer_id
from streams.codecs import header_map, loads
from streams.reference import load_reference
from streams.runtime.topics import internal_name
from streams.settings import Settings
from tests.support.stack import Worker, consume, produce

FLATIRON = load_reference().stores["s-flatiron"]
POISON = [
    b"\xff\xfe not utf-8",
    b'{"type": "track", "userId": "alice", "event": ',
    b'{"type": "track", "userId": "alice", "properties": {}}',
]


@dataclass(frozen=True)
class Shopper:
    user: str
    name: str
    tier: str
    discount_pct: int
    views: tuple[tuple[str, str], ...]  # (product id, category), oldest first


ALICE = Shopper("alice", "Alice Moreau", "gold", 20, (("p-101", "running"), ("p-201", "outdoor")))
OMAR = Shopper("omar", "Omar", "silver", 15, (("p-204", "outdoor"),))


@dataclass
class Outcome:
    offers: list[dict[str, Any]]
    dead_letters: list[Any]
    moments: list[dict[str, Any]]


def inside(user: str, message_id: str, timestamp: str) -> dict[str, Any]:
    return {
        "type": "location",
        "userId": user,
        "lat": FLATIRON.lat + 0.0001,
        "lon": FLATIRON.lon,
        "accuracy_m": 8,
        "messageId": message_id,
        "timestamp": timestamp,
    }


def walk_in(user: str, name: str, at: int, named_at: int) -> list[tuple[str, Any]]:
    """``user``, named ``name`` at ``named_at``, looks at running shoes a minute
    before walking into Flatiron at ``at`` (epoch ms): one store-entry moment."""
    return [
        ("clickstream", {"type": "identify", "userId": user, "messageId": f"id-{user}",
                         "traits": {"name": name}, "timestamp": named_at}),
        ("clickstream", {"type": "track", "event": "Product Viewed", "userId": user,
                         "messageId": f"v-{user}", "timestamp": at - 60_000,
                         "properties": {"product_id": "p-101", "category": "running"}}),
        ("location", {**inside(user, f"ping-{user}", ""), "timestamp": at}),
    ]  # fmt: skip


def minutes_ago(minutes: float) -> str:
    """An ISO time that long before now: a store-entry offer goes out only
    while the visit is on (a moment older than its type allows is stale)."""
    return datetime.fromtimestamp(time.time() - minutes * 60, UTC).isoformat()


def shopper_events(shopper: Shopper, ping: str = "ping-1") -> list[tuple[str, dict[str, Any]]]:
    """The shopper identifies, browses, then walks into Flatiron (ping id ``ping``),
    a minute ago."""
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "clickstream",
            {
                "type": "identify",
                "userId": shopper.user,
                "traits": {"name": shopper.name, "loyalty_tier": shopper.tier},
                "timestamp": minutes_ago(61),
            },
        )
    ]
    for minute, (product, category) in enumerate(shopper.views):
        props = {"product_id": product, "category": category}
        event = {"type": "track", "event": "Product Viewed", "userId": shopper.user}
        ts = minutes_ago(11 - minute)
        events.append(("clickstream", {**event, "properties": props, "timestamp": ts}))
    events.append(("location", inside(shopper.user, ping, minutes_ago(1))))
    return events


def visit_events(shopper: Shopper) -> list[tuple[str, dict[str, Any] | bytes]]:
    """The shopper browses and walks into Flatiron; Bob walks in without interest."""
    events: list[tuple[str, dict[str, Any] | bytes]] = []
    *before, enters = shopper_events(shopper)
    events += before
    events += [("clickstream", raw) for raw in POISON]
    events.append(("location", inside("bob", "ping-bob-1", minutes_ago(1))))
    events.append(enters)
    return events


def run_visit(settings: Settings, shopper: Shopper) -> Outcome:
    worker = Worker(settings)
    worker.start()
    try:
        asyncio.run(produce(settings, visit_events(shopper)))
        offers = asyncio.run(
            consume(settings, settings.topics.offers, lambda r: len(r) >= 1, seconds=240)
        )
        dead = asyncio.run(
            consume(settings, settings.topics.dlq, lambda r: len(r) >= len(POISON), seconds=30)
        )
        moments = asyncio.run(
            consume(settings, internal_name(settings, "moments"), lambda r: bool(r), seconds=5)
        )
    finally:
        worker.stop()
    return Outcome([loads(r.value) for r in offers], dead, [loads(r.value) for r in moments])


def check_offer_record(offer: dict[str, Any], settings: Settings, shopper: Shopper) -> None:
    """What every offer record promises its consumers."""
    moment = moment_id("store_entry", shopper.user, "s-flatiron", "ping-1")
    assert offer["offer_id"] == offer_id(moment)
    assert offer["user"] == shopper.user
    assert offer["store"] == {"id": "s-flatiron", "name": "Flatiron"}
    assert offer["moment"] == {"id": moment, "type": "store_entry", "store_id": "s-flatiron"}
    assert offer["coupon"]["discount_pct"] == shopper.discount_pct
    secret = settings.coupon_secret.get_secret_value()
    assert offer["coupon"]["code"] == coupon_code(offer["offer_id"], secret)
    assert offer["model"] == settings.llm_model
    assert f"view:{shopper.views[0][0]}" in offer["context_used"]
    assert "trait:name" in offer["context_used"]
    t = offer["timings"]
    assert t["ingested_at"] <= t["moment_at"] <= t["generation_started_at"] <= t["emitted_at"]
    assert t["generation_ms"] >= 0


def check_dead_letters(dead: list[Any], settings: Settings) -> None:
    assert sorted(r.value for r in dead) == sorted(POISON)
    reasons = {header_map(r.headers)["kairos.dlq.reason"] for r in dead}
    assert "track event has no 'event' name" in reasons
    assert any(reason.startswith("payload is not UTF-8") for reason in reasons)
    assert any(reason.startswith("payload is not valid JSON") for reason in reasons)
    for record in dead:
        headers = header_map(record.headers)
        assert headers["kairos.dlq.topic"] == settings.topics.clickstream
        assert headers["kairos.dlq.stage"] == "ingest"
        assert int(headers["kairos.dlq.offset"]) >= 0
