"""Windowed session features from tiles, against brute force over random event streams."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.features import SESSION_GAP_MS, WINDOWS, add, features, merge, window
from agents.fold import Fold
from agents.profile import new_profile
from streams.reference import load_reference
from tests.support.harness import policy

T0 = 1_795_000_000_000
PRODUCTS = ["p-101", "p-102", "p-201", "p-203", "p-301", "p-302"]
CATEGORIES = ["running", "outdoor", "apparel", "home"]

events_strategy = st.lists(
    st.tuples(
        # within nine days, or crowded into two hours, or into two days on the hour
        st.integers(0, 9 * 24 * 3_600_000)
        | st.integers(0, 2 * 3_600_000)
        | st.integers(0, 48).map(lambda h: h * 3_600_000 + 59 * 60_000),
        st.sampled_from(PRODUCTS),
        st.sampled_from(CATEGORIES),
        st.sampled_from(["track", "page", "location"]),
    ),
    max_size=60,
)


def event(offset: int, product: str, category: str, kind: str) -> dict[str, Any]:
    props = {"product_id": product, "category": category} if kind == "track" else {}
    return {"kind": kind, "ts": T0 + offset, "props": props}


def brute_force(stream: list[dict[str, Any]], name: str, now: int) -> dict[str, int]:
    _kind, length, span = WINDOWS[name]
    newest = now // length
    inside = [e for e in stream if newest - span < e["ts"] // length <= newest]
    return {
        "events": len(inside),
        "products": len({e["props"]["product_id"] for e in inside if e["props"]}),
        "categories": len({e["props"]["category"] for e in inside if e["props"]}),
    }


@settings(max_examples=300, deadline=None)
@given(
    events_strategy,
    st.randoms(use_true_random=False),
    st.integers(0, 3 * 3_600_000) | st.integers(0, 30).map(lambda m: m * 60_000),
)
def test_windows_match_brute_force_in_any_arrival_order(
    raw: list[Any], rng: Any, after: int
) -> None:
    stream = [event(*item) for item in raw]
    arrival = list(stream)
    rng.shuffle(arrival)  # out of order, as two source topics deliver it
    profile = new_profile("u1")
    for item in arrival:
        add(profile, item)
    now = max((e["ts"] for e in stream), default=T0) + after
    for name in WINDOWS:
        assert window(profile, name, now) == brute_force(stream, name, now), name


@settings(max_examples=100, deadline=None)
@given(events_strategy, events_strategy)
def test_merged_profiles_have_the_windows_of_all_their_events(
    first: list[Any], second: list[Any]
) -> None:
    a, b = new_profile("a"), new_profile("u")
    for item in first:
        add(a, event(*item))
    for item in second:
        add(b, event(*item))
    merge(b, a)
    stream = [event(*item) for item in first + second]
    now = max((e["ts"] for e in stream), default=T0)
    for name in WINDOWS:
        assert window(b, name, now) == brute_force(stream, name, now), name


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 48 * 3_600_000), max_size=40))
def test_sessions_split_on_the_inactivity_gap(offsets: list[int]) -> None:
    profile = new_profile("u1")
    times = sorted(T0 + o for o in offsets)
    for ts in times:
        add(profile, {"kind": "page", "ts": ts, "props": {}})
    starts = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > SESSION_GAP_MS]
    if not times:
        assert "session" not in profile
        return
    start, last, events, count = profile["session"]
    assert (count, start, last) == (len(starts), starts[-1], times[-1])
    assert events == sum(1 for t in times if t >= starts[-1])


def test_features_read_cart_purchase_and_visit_recency() -> None:
    reference = load_reference()
    product = next(iter(reference.products.values()))
    profile = new_profile("u1")
    profile["cart"] = {product.id: [2, T0]}
    profile["orders"] = [1, 10.0, T0 - 3_600_000]
    profile["visit"] = ["s-flatiron", T0 - 60_000, T0 - 60_000, "p", True]
    add(profile, {"kind": "page", "ts": T0, "props": {}})
    got = features(profile, T0 + 1000, reference)
    assert got["cart"] == {"items": 2, "value": round(2 * product.price, 2)}
    assert got["since_last_purchase_ms"] == 3_600_000 + 1000
    assert got["since_last_visit_ms"] == 61_000
    assert got["session"]["active"] and got["windows"]["15m"]["events"] == 1


def test_an_event_behind_the_watermark_is_applied_but_left_out_of_the_windows() -> None:
    profile = new_profile("u1")
    rules = policy()
    fold = Fold(lambda key: profile, rules)
    base = {"v": 1, "kind": "page", "user": "u1", "props": {}}
    newest = T0 + rules.allowed_lateness_ms + 60_000
    fold.apply({**base, "id": "new", "ts": newest, "at": newest})
    fold.apply({**base, "id": "within", "ts": T0 + 60_000, "at": newest})
    fold.apply({**base, "id": "late", "ts": T0 - 1, "at": newest})
    fold.apply({**base, "id": "traits", "kind": "traits", "traits": {"tier": "gold"}, "ts": T0})
    assert fold.dead == [] and (fold.late, fold.applied) == (1, 4)
    stored = fold.profiles["u1"]
    assert stored["n"] == 4 and stored["traits"]["tier"] == ["gold", T0]
    assert stored["recent"][0].startswith(f"{T0 - 1}|page|")  # in its history
    assert window(stored, "24h", newest)["events"] == 2  # but not in its windows
    assert fold.clock.newest == newest
