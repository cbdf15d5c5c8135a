"""The taste vector: decayed sums as events fold, in any order, across merges,
and its int8 form's bounds."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from agents.taste import (
    BUY_WEIGHT,
    CART_WEIGHT,
    LEVELS,
    PENDING,
    VIEW_WEIGHT,
    current,
    decoded,
    encoded,
    settle,
    taste_of,
)
from streams.errors import SettingsError
from streams.settings import Settings, load_settings
from streams.vectors import DIM, ProductVectors
from tests.support.harness import T0, Harness
from tests.support.vectors import hand_made, unit

HALF = int(Settings().taste_half_life_s * 1000)
# Event times up to T, the records' own time: a later one would be taken at T0.
T = T0 - 3 * HALF
A, B, C = unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)


def vectors() -> ProductVectors:
    return hand_made({"p-a": A, "p-b": B, "p-c": C})


def view(n: int, product: str, ts: int, **ids: str) -> tuple[str, dict[str, Any]]:
    return "clickstream", {
        "type": "track", "event": "Product Viewed", "messageId": f"v{n}", "timestamp": ts,
        "properties": {"product_id": product}, **(ids or {"userId": "ana"}),
    }  # fmt: skip


def held(harness: Harness, user: str = "ana") -> tuple[int, np.ndarray]:
    """The person's taste as of its latest event: (that time, the vector)."""
    taste = harness.profile(user)["taste"]
    vector = current(taste, harness.policy.reference.vectors, HALF)
    assert vector is not None
    return taste[3], vector


def close(vector: np.ndarray, expected: np.ndarray) -> None:
    """Equal within the int8 form's half step of its largest component."""
    step = float(np.max(np.abs(expected))) / LEVELS
    assert np.max(np.abs(vector - expected)) <= step / 2 + 1e-6


def test_an_older_view_weighs_half_per_half_life() -> None:
    harness = Harness(2, vectors=vectors())
    harness.send(view(1, "p-a", T), view(2, "p-b", T + HALF))
    as_of, vector = held(harness)
    assert as_of == T + HALF
    close(vector, 0.5 * VIEW_WEIGHT * A + VIEW_WEIGHT * B)


def test_the_decay_is_applied_when_a_newer_event_comes_in_a_later_bundle() -> None:
    harness = Harness(2, vectors=vectors())
    harness.send(view(1, "p-a", T))
    harness.send(view(2, "p-b", T + 2 * HALF))
    as_of, vector = held(harness)
    assert as_of == T + 2 * HALF
    close(vector, 0.25 * A + B)


def test_events_out_of_order_give_the_same_taste_as_in_order() -> None:
    ordered, shuffled = Harness(2, vectors=vectors()), Harness(2, vectors=vectors())
    events = [view(1, "p-a", T), view(2, "p-b", T + HALF), view(3, "p-c", T + 3 * HALF)]
    for item in events:
        ordered.send(item)
    for item in (events[2], events[0], events[1]):  # the newest first, then two late ones
        shuffled.send(item)
    (as_of, mine), (theirs_as_of, theirs) = held(ordered), held(shuffled)
    assert as_of == theirs_as_of == T + 3 * HALF
    expected = 0.125 * A + 0.25 * B + C
    close(mine, expected)
    close(theirs, expected)


def test_carts_and_orders_weigh_more_than_views() -> None:
    harness = Harness(2, vectors=vectors())
    added = {"type": "track", "event": "Product Added", "userId": "ana", "messageId": "c1",
             "timestamp": T, "properties": {"product_id": "p-b", "quantity": 1}}  # fmt: skip
    order = {"type": "order", "userId": "ana", "order_id": "o-1", "total": 10.0,
             "messageId": "o1", "timestamp": T, "items": [{"product_id": "p-c"}]}  # fmt: skip
    harness.send(view(1, "p-a", T), ("clickstream", added), ("crm", order))
    _as_of, vector = held(harness)
    close(vector, VIEW_WEIGHT * A + CART_WEIGHT * B + BUY_WEIGHT * C)


def test_a_product_without_a_vector_is_skipped_and_no_vectors_means_no_taste() -> None:
    harness = Harness(2, vectors=vectors())
    harness.send(view(1, "p-unknown", T))
    assert "taste" not in harness.profile("ana")
    assert harness.profile("ana")["asof"].get("taste") is None
    harness.send(view(2, "p-a", T + 1))
    assert harness.profile("ana")["asof"]["taste"] == T + 1
    plain = Harness(2)
    plain.send(view(1, "p-a", T))
    assert "taste" not in plain.profile("ana")


def test_a_merge_sums_both_tastes_at_the_later_as_of_time() -> None:
    harness = Harness(2, vectors=vectors())
    harness.send(view(1, "p-a", T + 2 * HALF, anonymousId="anon-1"))
    harness.send(view(2, "p-b", T))  # ana's own, two half-lives older
    login = {"type": "identify", "anonymousId": "anon-1", "userId": "ana",
             "messageId": "login", "timestamp": T + 2 * HALF + 1}  # fmt: skip
    harness.send(("clickstream", login))
    as_of, vector = held(harness)
    assert as_of == T + 2 * HALF
    close(vector, A + 0.25 * B)
    # The same views by one person in the first place give the same taste.
    alone = Harness(2, vectors=vectors())
    alone.send(view(1, "p-a", T + 2 * HALF), view(2, "p-b", T))
    close(held(alone)[1], A + 0.25 * B)


def test_views_in_the_bundle_of_the_merge_move_with_the_profile() -> None:
    harness = Harness(1, vectors=vectors())
    login = {"type": "identify", "anonymousId": "anon-1", "userId": "ana",
             "messageId": "login", "timestamp": T + 5}  # fmt: skip
    harness.send(view(1, "p-a", T, anonymousId="anon-1"), ("clickstream", login))
    close(held(harness)[1], A)


def test_a_moment_carries_the_taste_of_the_events_before_it_in_the_bundle() -> None:
    harness = Harness(1, vectors=vectors())
    store = next(iter(harness.policy.reference.current.stores.values()))
    ping = {"type": "location", "userId": "ana", "messageId": "l1", "timestamp": T + 10,
            "lat": store.lat, "lon": store.lon}  # fmt: skip
    catalog = harness.policy.reference.current.products
    product = next(p for p in catalog.values() if p.category in store.categories)
    harness.policy.reference.vectors.set(product.id, A)
    harness.send(view(1, product.id, T), ("location", ping))
    assert [m["type"] for m in harness.moments] == ["store_entry"]
    snapshot = harness.moments[0]["profile"]["taste"]
    close(current(snapshot, harness.policy.reference.vectors, HALF), A)  # type: ignore[arg-type]


def test_the_int8_form_is_within_half_a_step_and_bounded_in_bytes() -> None:
    rng = np.random.default_rng(7)
    for magnitude in (1e-30, 1e-3, 1.0, 1e6, 1e30):
        vector = (rng.standard_normal(DIM) * magnitude).astype(np.float32)
        stored = encoded(T, vector)
        assert stored is not None
        _as_of, back = decoded(stored)  # type: ignore[misc]
        assert np.max(np.abs(back - vector)) <= stored[1] / 2 * (1 + 1e-5)
        levels = np.frombuffer(__import__("base64").b64decode(stored[2]), dtype=np.int8)
        assert len(levels) == DIM and np.max(np.abs(levels)) == LEVELS  # the largest saturates
        assert len(orjson.dumps({"taste": stored})) <= 560


def test_an_all_zero_or_non_finite_vector_is_no_taste() -> None:
    assert encoded(T, np.zeros(DIM, dtype=np.float32)) is None
    broken = np.ones(DIM, dtype=np.float32)
    broken[3] = np.inf
    assert encoded(T, broken) is None


@pytest.mark.parametrize("spike", [1.0, 1e4])
def test_one_large_component_keeps_the_direction(spike: float) -> None:
    vector = np.full(DIM, 0.01, dtype=np.float32)
    vector[0] = spike
    _as_of, back = decoded(encoded(T, vector))  # type: ignore[misc]
    cosine = float(back @ vector / np.linalg.norm(back) / np.linalg.norm(vector))
    assert cosine > 0.99
    assert taste_of({"taste": [*encoded(T, vector), T, []]}, ProductVectors()) is not None  # type: ignore[misc]


def test_pending_products_are_summed_in_every_few_and_the_taste_is_the_same() -> None:
    held_vectors = vectors()
    harness = Harness(2, vectors=held_vectors)
    views = [view(n, ("p-a", "p-b", "p-c")[n % 3], T + n * HALF // 4) for n in range(PENDING + 3)]
    for item in views[: PENDING - 1]:
        harness.send(item)
    taste = harness.profile("ana")["taste"]
    assert taste[2] == "" and len(taste[4]) == 2 * (PENDING - 1)  # no vector stored yet
    for item in views[PENDING - 1 :]:
        harness.send(item)
    taste = harness.profile("ana")["taste"]
    assert taste[2] and len(taste[4]) == 2 * 3  # summed in at the PENDING-th; three since
    expected = sum(
        (
            np.float32(2.0 ** (-(len(views) - 1 - n) / 4)) * (A, B, C)[n % 3]
            for n in range(len(views))
        ),
        np.zeros(DIM, np.float32),
    )
    _latest, vector = held(harness)
    close(vector, expected)
    profile = harness.profile("ana")
    settle(profile, held_vectors, HALF)
    assert profile["taste"][4] == [] and profile["taste"][0] == profile["taste"][3]
    close(current(profile["taste"], held_vectors, HALF), expected)  # type: ignore[arg-type]


def test_a_product_whose_vector_is_gone_no_longer_counts_when_read() -> None:
    held_vectors = vectors()
    harness = Harness(2, vectors=held_vectors)
    harness.send(view(1, "p-a", T), view(2, "p-b", T))
    held_vectors.remove("p-b")
    taste = taste_of(harness.profile("ana"), held_vectors)
    assert taste is not None and np.allclose(taste, A, atol=1e-6)


@pytest.mark.parametrize("value", ["0", "59", "31536001", "soon"])
def test_a_bad_half_life_stops_start_up_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIROS_TASTE_HALF_LIFE_S", value)
    with pytest.raises(SettingsError, match="KAIROS_TASTE_HALF_LIFE_S"):
        load_settings()
