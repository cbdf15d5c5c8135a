"""Profiles and the store-entry rule, in event time."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agents import moment_types
from agents.moment_types import reference_used
from agents.moment_types.cart_abandoned import cart_abandoned
from agents.moment_types.store_entry import store_entry
from agents.moment_types.win_back import WinBack, context, win_back
from agents.moments import moment_id, update_visit
from agents.profile import MAX_VIEWS, apply_event, new_profile, trait
from streams.reference import Reference, load_reference

REF = load_reference()
FLATIRON = REF.stores["s-flatiron"]
HOUR = 3600 * 1000
RULE = {"recent_interest_ms": 24 * HOUR, "cooldown_ms": 6 * HOUR}


def view(ts: int, product: str = "p-101") -> dict[str, Any]:
    props = {"product_id": product, "category": "running"}
    return {"kind": "track", "name": "Product Viewed", "user": "u1", "ts": ts, "props": props}


def ping(ts: int, inside: bool = True, event_id: str | None = None) -> dict[str, Any]:
    lat = FLATIRON.lat + (0.0001 if inside else 0.01)
    props = {"lat": lat, "lon": FLATIRON.lon}
    return {"kind": "location", "user": "u1", "ts": ts, "props": props, "id": event_id or f"p{ts}"}


def fold(profile: dict[str, Any], event: dict[str, Any]) -> dict[str, Any] | None:
    """What the context agent does with one event."""
    if event["kind"] == "location":
        update_visit(profile, event, REF)
    else:
        apply_event(profile, event)
    return store_entry(profile, **RULE)


def test_entry_with_recent_interest_fires_once_per_visit() -> None:
    profile = new_profile("u1")
    assert fold(profile, view(10 * HOUR)) is None
    moment = fold(profile, ping(11 * HOUR, event_id="ping-1"))
    assert moment is not None
    assert moment["store_id"] == "s-flatiron"
    assert moment["event_ts"] == 11 * HOUR
    assert moment["id"] == moment_id("store_entry", "u1", "s-flatiron", "ping-1")
    assert fold(profile, ping(11 * HOUR + 60_000)) is None  # same visit


def test_no_interest_no_moment() -> None:
    profile = new_profile("u1")
    assert fold(profile, ping(11 * HOUR)) is None


def test_a_late_view_completes_the_visit_with_the_pings_id() -> None:
    """Clickstream and location race: the view is processed after the ping."""
    profile = new_profile("u1")
    assert fold(profile, ping(11 * HOUR, event_id="ping-1")) is None
    moment = fold(profile, view(10 * HOUR))
    assert moment is not None
    assert moment["id"] == moment_id("store_entry", "u1", "s-flatiron", "ping-1")


def test_a_view_after_the_visit_ended_does_not_fire() -> None:
    profile = new_profile("u1")
    fold(profile, ping(11 * HOUR))
    assert fold(profile, view(13 * HOUR)) is None


def test_cooldown_and_opt_out() -> None:
    profile = new_profile("u1")
    fold(profile, view(10 * HOUR))
    assert fold(profile, ping(11 * HOUR)) is not None
    fold(profile, ping(12 * HOUR, inside=False))
    assert fold(profile, ping(13 * HOUR)) is None  # within the 6 h cooldown
    fold(profile, ping(18 * HOUR, inside=False))
    fold(profile, view(18 * HOUR))
    opted = {"kind": "traits", "user": "u1", "ts": 18 * HOUR, "traits": {"marketing_opt_out": True}}
    fold(profile, opted)
    assert fold(profile, ping(19 * HOUR)) is None


def test_older_ping_is_ignored() -> None:
    profile = new_profile("u1")
    fold(profile, view(10 * HOUR))
    fold(profile, ping(12 * HOUR, inside=False))
    assert fold(profile, ping(11 * HOUR)) is None
    assert profile["visit"][0] is None


def test_traits_latest_event_time_wins() -> None:
    profile = new_profile("u1")
    apply_event(profile, {"kind": "identify", "ts": 20, "traits": {"tier": "gold"}})
    apply_event(profile, {"kind": "traits", "ts": 10, "traits": {"tier": "bronze"}})
    assert trait(profile, "tier") == "gold"
    apply_event(profile, {"kind": "traits", "ts": 30, "traits": {"tier": "silver"}})
    assert trait(profile, "tier") == "silver"


def test_views_are_bounded_and_in_event_time_order() -> None:
    profile = new_profile("u1")
    for ts in [5, 1, 3, *range(100, 100 + MAX_VIEWS)]:
        apply_event(profile, view(ts))
    timestamps = [v[0] for v in profile["views"]]
    assert len(timestamps) == MAX_VIEWS
    assert timestamps == sorted(timestamps)
    assert timestamps[0] == 100


def test_cart_add_remove_and_order() -> None:
    profile = new_profile("u1")
    add = {"kind": "track", "name": "Product Added", "ts": 1, "props": {"product_id": "p-101"}}
    apply_event(profile, add)
    apply_event(profile, {**add, "ts": 2})
    assert profile["cart"]["p-101"][0] == 2
    apply_event(profile, {**add, "name": "Order Completed", "ts": 3})
    assert profile["cart"] == {}


def cart(ts: int, product: str = "p-101", name: str = "Product Added") -> dict[str, Any]:
    return {"kind": "track", "name": name, "user": "u1", "ts": ts,
            "props": {"product_id": product}}  # fmt: skip


CART = {"idle_ms": 30 * 60_000, "cooldown_ms": 24 * HOUR}


def test_a_cart_left_alone_fires_once_when_its_idle_time_runs_out() -> None:
    profile = new_profile("u1")
    apply_event(profile, cart(10 * HOUR))
    apply_event(profile, cart(10 * HOUR + 60_000, "p-203"))
    due = 10 * HOUR + 60_000 + CART["idle_ms"]
    assert cart_abandoned(profile, due - 1, **CART) is None
    moment = cart_abandoned(profile, due + 5000, **CART)
    assert moment is not None
    assert (moment["type"], moment["event_ts"], moment["cart"]) == (
        "cart_abandoned", due, ["p-101", "p-203"],
    )  # fmt: skip
    assert cart_abandoned(profile, due + 60_000, **CART) is None  # once per cart
    # A new cart the next day is a new moment; the same one an hour later is not.
    apply_event(profile, cart(11 * HOUR, "p-102"))
    assert cart_abandoned(profile, 12 * HOUR, **CART) is None  # within the cooldown
    apply_event(profile, cart(36 * HOUR, "p-104"))
    assert cart_abandoned(profile, 37 * HOUR, **CART) is not None


def test_an_order_or_an_opt_out_means_no_cart_moment() -> None:
    profile = new_profile("u1")
    apply_event(profile, cart(10 * HOUR))
    apply_event(profile, cart(10 * HOUR + 1000, product="", name="Order Completed"))
    assert profile["cart"] == {}
    assert cart_abandoned(profile, 12 * HOUR, **CART) is None
    apply_event(profile, cart(13 * HOUR))
    opted = {"kind": "traits", "user": "u1", "ts": 13 * HOUR, "traits": {"unsubscribed": True}}
    apply_event(profile, opted)
    assert cart_abandoned(profile, 14 * HOUR, **CART) is None


BACK = {"lapsed_ms": 30 * 24 * HOUR, "cooldown_ms": 30 * 24 * HOUR}


def test_a_shopper_who_stays_away_is_won_back_once() -> None:
    profile = new_profile("u1")
    update_visit(profile, ping(10 * HOUR, event_id="v1"), REF)
    update_visit(profile, ping(10 * HOUR + 20 * 60_000), REF)  # same visit, 20 min later
    left = 10 * HOUR + 20 * 60_000
    assert profile["last_store"] == ["s-flatiron", 10 * HOUR, left]
    assert win_back(profile, left + BACK["lapsed_ms"] - 1, **BACK) is None
    moment = win_back(profile, left + BACK["lapsed_ms"], **BACK)
    assert moment is not None
    assert (moment["type"], moment["store_id"], moment["event_ts"]) == (
        "win_back", "s-flatiron", left + BACK["lapsed_ms"],
    )  # fmt: skip
    assert win_back(profile, left + BACK["lapsed_ms"] + HOUR, **BACK) is None  # once
    # Back in the store later: nothing until that visit, too, has lapsed.
    update_visit(profile, ping(40 * 24 * HOUR), REF)
    assert win_back(profile, 41 * 24 * HOUR, **BACK) is None
    assert win_back(profile, 71 * 24 * HOUR, **BACK) is not None


NO_SLICE = {"stores": [], "products": []}


def test_a_win_back_with_no_store_left_records_an_empty_slice() -> None:
    moment = {"id": "m1", "type": "win_back", "user": "u1", "store_id": "s-flatiron",
              "event_ts": 31 * 24 * HOUR, "trigger_id": "visit@0"}  # fmt: skip
    no_stores = Reference.of([], REF.products.values())
    with pytest.raises(KeyError):  # as for a store entry, not StopIteration
        context(new_profile("u1"), moment, no_stores, WinBack())
    assert reference_used(new_profile("u1"), moment, no_stores, WinBack()) == NO_SLICE


def test_any_failure_of_a_context_records_an_empty_slice(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("a bug in a moment type")

    kinds = {**moment_types.MOMENT_TYPES}
    kinds["win_back"] = replace(kinds["win_back"], context=broken)
    monkeypatch.setattr(moment_types, "MOMENT_TYPES", kinds)
    moment = {"id": "m1", "type": "win_back", "user": "u1", "store_id": "s-flatiron"}
    assert reference_used(new_profile("u1"), moment, REF, WinBack()) == NO_SLICE
