"""The profile's layout: remembered ids, recent events, offers, the size bound."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from agents.profile import (
    DEDUPE_WINDOW,
    MAX_CHANNEL_COUNT,
    MAX_CODE,
    MAX_PROFILE_BYTES,
    MAX_RECENT,
    PROFILE_VERSION,
    add_channel_counts,
    first_sight,
    merge_profiles,
    new_profile,
    recent_events,
    remember_offer,
    upgraded,
)
from agents.replies import MAX_REPLIES
from agents.taste import PENDING, encoded
from models.replies import MAX_TERMS, MAX_TEXT
from streams.codecs import dumps
from streams.domain.offer import CHANNELS
from streams.vectors import DIM
from tests.support.harness import T0, Harness

HOUR = 3_600_000


def track(n: int, ts: int, name: str = "Product Viewed", **props: Any) -> tuple[str, dict]:
    return "clickstream", {
        "type": "track", "event": name, "userId": "u1", "messageId": f"t{n}",
        "timestamp": ts, "properties": props,
    }  # fmt: skip


def test_a_version_2_profile_keeps_its_remembered_ids() -> None:
    ids = [f"m{n}" for n in range(5)]
    v2 = {
        "v": 2, "user": "u1", "traits": {}, "views": [], "cart": {},
        "visit": [None, 0, 0, "", False], "moments": {}, "orders": [0, 0.0, 0],
        "tickets": {}, "outcomes": {}, "ids": [], "n": 5, "updated": T0,
        "seen": [int.from_bytes(hashlib.blake2b(i.encode(), digest_size=7).digest())
                 for i in ids],
    }  # fmt: skip
    profile = upgraded(v2)
    assert profile["v"] == PROFILE_VERSION and profile["recent"] == [] and profile["offers"] == []
    assert profile["channels"] == {} and profile["tz"] is None
    assert not any(first_sight(profile, i) for i in ids)
    assert first_sight(profile, "m5")
    assert not first_sight(profile, "m5")


def test_remembered_ids_are_bounded_and_forgotten_oldest_first() -> None:
    profile = new_profile("u1")
    for n in range(DEDUPE_WINDOW + 10):
        assert first_sight(profile, f"e{n}")
    assert len(profile["seen"]) == DEDUPE_WINDOW * 8
    assert not first_sight(profile, f"e{DEDUPE_WINDOW + 9}")
    assert first_sight(profile, "e0")  # forgotten: applied again


def test_recent_events_are_newest_first_bounded_and_in_event_time_order() -> None:
    h = Harness()
    # Out of order, and more than are kept.
    times = [T0 + n * 1000 for n in range(MAX_RECENT + 4)]
    order = times[1::2] + times[::2]
    h.send(*(track(n, ts, product_id=f"p-{n}") for n, ts in enumerate(order)))
    events = recent_events(h.profile("u1"))
    assert [e["timestamp"] for e in events] == sorted(times, reverse=True)[:MAX_RECENT]
    assert events[0] == {
        "timestamp": times[-1], "type": "track", "name": "Product Viewed",
        "product_id": f"p-{order.index(times[-1])}",
    }  # fmt: skip


def test_offers_are_remembered_once_and_merged_by_id() -> None:
    a, b = new_profile("a1"), new_profile("u1")
    remember_offer(a, "o-1", "store_entry", T0)
    remember_offer(a, "o-1", "store_entry", T0)
    remember_offer(b, "o-2", "store_entry", T0 + 5, "a", "offer", "sms")
    merge_profiles(b, a)
    assert b["offers"] == [
        ["o-1", "store_entry", T0, None, "offer", None],
        ["o-2", "store_entry", T0 + 5, "a", "offer", "sms"],
    ]


def test_channel_history_and_the_time_zone_merge_with_the_person() -> None:
    a, b = new_profile("a1"), new_profile("u1")
    add_channel_counts(a, "email", [3, 2, 1])
    add_channel_counts(b, "email", [1, 1, 0])
    a["tz"], b["tz"] = ["Europe/Paris", T0 + 5], ["America/New_York", T0]
    merge_profiles(b, a)
    assert b["channels"] == {"email": [4, 3, 1]} and b["tz"] == ["Europe/Paris", T0 + 5]
    # Past the bound every count halves: the rates stay, older feedback weighs less.
    add_channel_counts(b, "email", [MAX_CHANNEL_COUNT, 0, 0])
    assert b["channels"]["email"] == [(MAX_CHANNEL_COUNT + 4) // 2, 1, 0]


def test_codes_too_long_to_keep_are_left_out() -> None:
    h = Harness()
    h.send(track(1, T0, product_id="p" * (MAX_CODE + 1), category="c" * (MAX_CODE + 1)))
    profile = h.profile("u1")
    assert profile["views"] == [] and profile["n"] == 1
    assert profile["tiles"]["m"][0][2:] == [[], []]


def worst_case() -> dict[str, Any]:
    """A person who fills every bounded field with the longest values kept."""
    h = Harness()
    long = "x" * 300
    n = 0
    items: list[tuple[str, dict]] = []

    def add(source: str, body: dict) -> None:
        nonlocal n
        n += 1
        items.append((source, {"messageId": f"w{n}-{long[:200]}", **body}))

    start, week = T0 - 168 * HOUR, T0  # records are stamped T0: nothing is in the future

    # Every hour tile of a week and every minute tile of the last hour, each
    # with as many distinct long products and categories as a tile keeps.
    def product(name: str, tag: str, ts: int) -> None:
        props = {"product_id": tag.ljust(MAX_CODE, "p"), "category": tag.ljust(MAX_CODE, "c")}
        add("clickstream", {"type": "track", "event": name, "userId": "u1", "timestamp": ts,
                            "properties": props})  # fmt: skip

    for tile in range(168):
        for k in range(20):
            product("Product Viewed", f"{tile}-{k}-", start + tile * HOUR + k)
    for minute in range(60):
        for k in range(20):
            product("Product Added", f"m{minute}-{k}-", week - HOUR + minute * 60_000 + k)
    traits = {f"{t}".ljust(80, "t"): long for t in range(80)}
    add("clickstream", {"type": "identify", "userId": "u1", "traits": traits, "timestamp": week,
                        "context": {"timezone": "A" * 31 + "/" + "B" * 32}})  # fmt: skip
    for t in range(20):
        add("crm", {"type": "ticket", "userId": "u1", "ticket_id": f"{t}".ljust(MAX_CODE, "k"),
                    "status": "open", "timestamp": week})  # fmt: skip
    for o in range(40):
        offer = f"{o}".ljust(MAX_CODE, "o")
        for action in ("delivered", "opened", "clicked", "redeemed", "dismissed"):
            add("feedback", {"type": "feedback", "userId": "u1", "action": action,
                             "offer_id": offer, "timestamp": week})  # fmt: skip
    # Replies each deriving as many terms as one keeps, with as long a text.
    said = "no more shoes socks vests jackets bottles headlamps hoodies chinos beanies wallets"
    for r in range(2 * MAX_REPLIES):
        add("feedback", {"type": "feedback", "userId": "u1", "action": "replied",
                         "offer_id": f"{r}".ljust(MAX_CODE, "o"), "timestamp": week,
                         "text": f"{said} {'abcdefghij'[r]} ".ljust(300, "x")})  # fmt: skip
    for i in range(40):
        add("clickstream", {"type": "alias", "userId": "u1",
                            "previousId": f"{i}".ljust(256, "a"), "timestamp": week})  # fmt: skip
    for start in range(0, len(items), 2000):
        h.send(*items[start : start + 2000])
    profile = h.profile("u1")
    for o in range(20):
        remember_offer(profile, f"o-{o}".ljust(26, "o"), "cart_abandoned", week, "b", "holdout",
                       "email")  # fmt: skip
    for channel in CHANNELS:
        add_channel_counts(profile, channel, [MAX_CHANNEL_COUNT] * 3)
    for outcome in profile["outcomes"].values():  # an order converts what it follows
        outcome["converted"] = week
    # The taste vector: a fixed size, the longest scale and as-of time it can have.
    held = encoded(week, np.full(DIM, -3.4e38 / 2, dtype=np.float32))
    pending = [MAX_CODE * "p", -1.23457e-30] * (PENDING - 1)  # one more: summed in
    profile["taste"] = [*held, week, pending]  # type: ignore[misc]
    profile["asof"]["taste"] = week
    return profile


def test_a_profile_stays_within_its_documented_bound() -> None:
    profile = worst_case()
    assert len(profile["tiles"]["h"]) == 168 and len(profile["tiles"]["m"]) == 60
    assert len(profile["traits"]) == 64 and len(profile["cart"]) == 32
    assert len(profile["outcomes"]) == 32 and len(profile["ids"]) == 32
    assert len(profile["tz"][0]) == 64 and len(profile["channels"]) == len(CHANNELS)
    assert len(profile["replies"]) == MAX_REPLIES
    assert all(
        len(held[1]) == MAX_TEXT and len(held[4]) == MAX_TERMS for held in profile["replies"]
    )
    assert MAX_PROFILE_BYTES * 0.8 < len(dumps(profile)) <= MAX_PROFILE_BYTES
