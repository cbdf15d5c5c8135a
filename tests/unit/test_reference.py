"""Reference data: the store grid agrees with a scan of every store; updates."""

from __future__ import annotations

import random

import pytest

from streams.reference import (
    CELL_DEG,
    Reference,
    ReferenceDataError,
    Store,
    distance_m,
    load_reference,
)


def brute_force(stores: list[Store], lat: float, lon: float) -> Store | None:
    inside = [(distance_m(lat, lon, s.lat, s.lon), s) for s in stores]
    inside = [(d, s) for d, s in inside if d <= s.radius_m]
    return min(inside, key=lambda pair: pair[0])[1] if inside else None


def test_the_grid_finds_what_a_scan_of_every_store_finds() -> None:
    rng = random.Random(3)
    # Stores packed near cell corners, some with geofences wider than a cell.
    stores = [
        Store(f"s{n}", f"S{n}", 40 + rng.randrange(5) * CELL_DEG + rng.uniform(-1e-4, 1e-4),
              -74 + rng.randrange(5) * CELL_DEG + rng.uniform(-1e-4, 1e-4),
              rng.choice([30.0, 400.0, 2500.0]), "", ())
        for n in range(60)
    ]  # fmt: skip
    reference = Reference.of(stores, [])
    for _ in range(3000):
        lat, lon = 40 + rng.uniform(-0.03, 0.08), -74 + rng.uniform(-0.03, 0.08)
        assert reference.store_at(lat, lon) == brute_force(stores, lat, lon)


def test_updates_replace_add_and_remove() -> None:
    demo = load_reference()
    moved = {"id": "s-soho", "name": "SoHo", "lat": 10.0, "lon": 10.0, "radius_m": 50}
    reference = demo.updated("store", "s-soho", moved)
    assert reference.store_at(10.0, 10.0).id == "s-soho"
    assert reference.store_at(demo.stores["s-soho"].lat, demo.stores["s-soho"].lon) is None
    reference = reference.updated("store", "s-soho", None)
    assert "s-soho" not in reference.stores and reference.store_at(10.0, 10.0) is None
    priced = {"id": "p-101", "name": "Shoe", "category": "running", "price": 99.5}
    assert demo.updated("product", "p-101", priced).products["p-101"].price == 99.5


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"id": "s", "name": "S", "lat": 1, "lon": 2}, "store 's': missing 'radius_m'"),
        ({"id": "s", "name": "S", "lat": 91, "lon": 2, "radius_m": 5}, "lat/lon out of range"),
        ({"id": "s", "name": "S", "lat": 1, "lon": 2, "radius_m": 0}, "radius_m must be in"),
        ({"id": "", "name": "S", "lat": 1, "lon": 2, "radius_m": 5}, "'id' must be non-empty"),
        ({"id": "t", "name": "S", "lat": 1, "lon": 2, "radius_m": 5}, "keyed 's' has id 't'"),
    ],
)
def test_a_bad_store_says_what_is_wrong(row: dict, reason: str) -> None:
    with pytest.raises(ReferenceDataError, match=reason):
        load_reference().updated("store", "s", row)
