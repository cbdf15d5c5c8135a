"""Reference data: stores (with geofences) and the product catalog.

Loaded from JSON files: the demo data shipped in streams/data, or the folder
named by ``KAIROS_REFERENCE_DIR`` (``stores.json`` and ``catalog.json``).
Updated at runtime from the reference topic (agents/reference.py): every
worker reads all of it, so each holds the same stores and products.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from streams.errors import ReferenceDataError
from streams.vectors import ProductVectors

DEMO_DIR = Path(__file__).parent / "data"
EARTH_RADIUS_M = 6_371_000.0


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
    # Free text, optional: what the product vector is made of with the name
    # and category (agents/embedding.py).
    description: str = ""


# Stores are indexed by grid cell (this many degrees a side), so finding the
# store at a point reads one cell, however many stores there are.
CELL_DEG = 0.01
METRES_PER_DEG = 111_320.0


@dataclass(frozen=True)
class Reference:
    stores: dict[str, Store]
    products: dict[str, Product]
    cells: dict[tuple[int, int], tuple[Store, ...]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, stores: Iterable[Store], products: Iterable[Product]) -> Reference:
        by_id = {store.id: store for store in stores}
        cells: dict[tuple[int, int], list[Store]] = {}
        for store in by_id.values():
            for cell in _cells_of(store):
                cells.setdefault(cell, []).append(store)
        return cls(by_id, {p.id: p for p in products}, {c: tuple(v) for c, v in cells.items()})

    def store_at(self, lat: float, lon: float) -> Store | None:
        """The store whose geofence contains the point (the nearest, if several)."""
        best: tuple[float, Store] | None = None
        for store in self.cells.get(_cell(lat, lon), ()):
            distance = distance_m(lat, lon, store.lat, store.lon)
            if distance <= store.radius_m and (best is None or distance < best[0]):
                best = (distance, store)
        return best[1] if best else None

    def updated(self, kind: str, key: str, row: dict[str, Any] | None) -> Reference:
        """A copy with one store or product replaced, added, or (``row`` None) removed."""
        stores, products = dict(self.stores), dict(self.products)
        table: dict[str, Any] = stores if kind == "store" else products
        table.pop(key, None)
        if row is not None:
            item = parse_store(row) if kind == "store" else parse_product(row)
            if item.id != key:
                raise ReferenceDataError(f"{kind} record keyed {key!r} has id {item.id!r}")
            table[key] = item
        return Reference.of(stores.values(), products.values())


def _cell(lat: float, lon: float) -> tuple[int, int]:
    return math.floor(lat / CELL_DEG), math.floor(lon / CELL_DEG)


def _cells_of(store: Store) -> Iterator[tuple[int, int]]:
    """Every cell the store's geofence reaches into."""
    dlat = store.radius_m / METRES_PER_DEG
    dlon = store.radius_m / (METRES_PER_DEG * max(0.01, math.cos(math.radians(store.lat))))
    low, high = _cell(store.lat - dlat, store.lon - dlon), _cell(store.lat + dlat, store.lon + dlon)
    for i in range(low[0], high[0] + 1):
        for j in range(low[1], high[1] + 1):
            yield i, j


def parse_store(row: Any) -> Store:
    """A store from its JSON object; ReferenceDataError says what is wrong."""
    try:
        store = Store(
            id=_text(row, "id"),
            name=_text(row, "name"),
            lat=float(row["lat"]),
            lon=float(row["lon"]),
            radius_m=float(row["radius_m"]),
            hours=str(row.get("hours", "")),
            categories=tuple(str(c) for c in row.get("categories", ())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReferenceDataError(f"store {_name(row)}: {_problem(exc)}") from None
    if not (-90 <= store.lat <= 90 and -180 <= store.lon <= 180):
        raise ReferenceDataError(f"store {store.id!r}: lat/lon out of range")
    if not 0 < store.radius_m <= 10_000:
        raise ReferenceDataError(f"store {store.id!r}: radius_m must be in (0, 10000] metres")
    return store


def parse_product(row: Any) -> Product:
    """A product from its JSON object; ReferenceDataError says what is wrong."""
    try:
        product = Product(_text(row, "id"), _text(row, "name"), _text(row, "category"),
                          float(row["price"]), _optional_text(row, "description"))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise ReferenceDataError(f"product {_name(row)}: {_problem(exc)}") from None
    if not (product.price >= 0 and math.isfinite(product.price)):
        raise ReferenceDataError(f"product {product.id!r}: price must be a non-negative number")
    return product


def _text(row: Any, field: str) -> str:
    value = row[field]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field!r} must be non-empty text")
    return value


def _optional_text(row: Any, field: str) -> str:
    value = row.get(field, "")
    if not isinstance(value, str):
        raise ValueError(f"{field!r} must be text")
    return value


def _name(row: Any) -> str:
    return repr(row.get("id")) if isinstance(row, dict) and "id" in row else "(no id)"


def _problem(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]!r}"
    if isinstance(exc, TypeError):
        return "expected a JSON object with the documented fields"
    return str(exc)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def load_reference(folder: Path | None = None) -> Reference:
    folder = folder or DEMO_DIR
    stores = [parse_store(row) for row in _read(folder / "stores.json")]
    products = [parse_product(row) for row in _read(folder / "catalog.json")]
    return Reference.of(stores, products)


def read_rows(path: Path) -> list[Any]:
    """Rows of a JSON list file, or of a JSON-lines file."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ReferenceDataError(f"cannot read {path}: {exc}") from None
    if text.lstrip().startswith(b"["):
        return _read(path)
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise ReferenceDataError(f"{path}, line {n}: not valid JSON: {exc}") from None
    return rows


def _read(path: Path) -> list[dict]:
    try:
        rows = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ReferenceDataError(f"cannot read {path}: {exc}") from None
    if not isinstance(rows, list):
        raise ReferenceDataError(f"{path}: expected a JSON list")
    return rows


class ReferenceData:
    """The reference data in force in one worker: the files in ``folder``
    (the packaged ones if None), with the updates applied since.

    ``vectors`` holds a unit vector per product, kept up to date by the
    embedding stage (agents/embedding.py), which :meth:`apply` tells of each
    product it changes through ``product_listeners``.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._current: Reference | None = None
        self.vectors = ProductVectors()
        self.product_listeners: list[Callable[[str], None]] = []

    @property
    def current(self) -> Reference:
        if self._current is None:  # read on first use: a tool that never asks reads no file
            self._current = load_reference(self.folder)
        return self._current

    def apply(self, kind: str, key: str, row: dict[str, Any] | None) -> None:
        """Replace, add or remove one store or product."""
        self._current = self.current.updated(kind, key, row)
        if kind == "product":
            for listener in self.product_listeners:
                listener(key)
