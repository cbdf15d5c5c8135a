"""Reference data: stores (with geofences) and the product catalog.

Loaded from JSON files: the demo data shipped in streams/data, or the folder
named by ``KAIROS_REFERENCE_DIR`` (``stores.json`` and ``catalog.json``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import orjson

DEMO_DIR = Path(__file__).parent / "data"
EARTH_RADIUS_M = 6_371_000.0


class ReferenceError(ValueError):
    """A reference file is missing or malformed."""


@dataclass(frozen=True)
class Store:
    id: str
    name: str
    lat: float
    lon: float
    radius_m: float
    hours: str
    categories: tuple[str, ...]


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    category: str
    price: float


@dataclass(frozen=True)
class Reference:
    stores: dict[str, Store]
    products: dict[str, Product]

    def store_at(self, lat: float, lon: float) -> Store | None:
        """The store whose geofence contains the point (the nearest, if several)."""
        best: tuple[float, Store] | None = None
        for store in self.stores.values():
            distance = distance_m(lat, lon, store.lat, store.lon)
            if distance <= store.radius_m and (best is None or distance < best[0]):
                best = (distance, store)
        return best[1] if best else None


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def load_reference(folder: Path | None = None) -> Reference:
    folder = folder or DEMO_DIR
    stores = [
        Store(
            id=str(s["id"]),
            name=str(s["name"]),
            lat=float(s["lat"]),
            lon=float(s["lon"]),
            radius_m=float(s["radius_m"]),
            hours=str(s.get("hours", "")),
            categories=tuple(s.get("categories", ())),
        )
        for s in _read(folder / "stores.json")
    ]
    products = [
        Product(str(p["id"]), str(p["name"]), str(p["category"]), float(p["price"]))
        for p in _read(folder / "catalog.json")
    ]
    return Reference({s.id: s for s in stores}, {p.id: p for p in products})


def _read(path: Path) -> list[dict]:
    try:
        rows = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ReferenceError(f"cannot read {path}: {exc}") from None
    if not isinstance(rows, list):
        raise ReferenceError(f"{path}: expected a JSON list")
    return rows


@lru_cache(maxsize=4)
def cached_reference(folder: Path | None) -> Reference:
    return load_reference(folder)
