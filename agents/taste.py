"""A person's taste: a recency-decayed sum of the vectors of the products
they viewed, carted and bought.

    profile["taste"] = [as_of, scale, "<base64 of DIM int8>"]

The sum is held as of ``as_of`` (an event time): each event added with the
weight of its kind, halved for every ``half_life_ms`` between its time and
``as_of``. Decay is lazy: a newer event first decays the sum to its own
time, an older one (out of order) is added decayed to ``as_of``, so the sum
is the same whatever order the events came in. Two people found to be one
are summed at the later of their as-of times.

Stored as int8 with one scale (the largest component over 127): 384 bytes,
512 characters of base64, about 540 bytes of JSON per person, however many
events it sums. Each component is off by at most half a step (``scale``/2),
and rounding never saturates, since the scale follows the largest component.

The fold does not touch the vector per event: it collects a person's
additions (:class:`Additions`) and :func:`fold_in` applies them once per
person per bundle, one decode and one encode. A product without a vector is
skipped; nothing calls a model here.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.profile import VIEW_EVENTS, code
from streams.domain import Event, Profile
from streams.vectors import ProductVectors

LEVELS = 127  # int8 steps either side of zero
# What an event says about taste, per kind. A cart or an order is a choice,
# a view often a glance: each counts several views. Not more, so that one
# order (often a gift, or a need now met) does not outweigh the browsing of
# the sessions around it; bench/recommend.py measures the choice.
VIEW_WEIGHT = 1.0
CART_WEIGHT = 3.0
BUY_WEIGHT = 5.0


def weighed(event: Event) -> list[tuple[str, float]]:
    """The products an event says something about, with their weights."""
    kind, props = event["kind"], event.get("props") or {}
    if kind == "order":
        items = props.get("items") or ()
        return [(p, BUY_WEIGHT) for item in items if (p := code(item.get("product_id")))]
    if kind != "track":
        return []
    name = event.get("name")
    if name == "Order Completed":  # Segment's order: its products
        products = props.get("products")
        items = products if isinstance(products, list) else ()
        return [(p, BUY_WEIGHT) for item in items
                if isinstance(item, dict) and (p := code(item.get("product_id")))]  # fmt: skip
    weight = VIEW_WEIGHT if name in VIEW_EVENTS else CART_WEIGHT if name == "Product Added" else 0
    product = code(props.get("product_id")) if weight else None
    return [(product, weight)] if product else []


@dataclass
class Additions:
    """One person's additions in one bundle, not yet in their stored vector."""

    times: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)

    def add(self, ts: int, weight: float, vector: np.ndarray) -> None:
        self.times.append(ts)
        self.weights.append(weight)
        self.vectors.append(vector)


def observe(pending: dict[str, Additions], key: str, event: Event, vectors: ProductVectors) -> bool:
    """Collect ``event``'s products that have a vector into ``pending[key]``."""
    found = False
    for product, weight in weighed(event):
        vector = vectors.get(product)
        if vector is not None:
            pending.setdefault(key, Additions()).add(event["ts"], weight, vector)
            found = True
    return found


def decay(from_ts: int, to_ts: int, half_life_ms: int) -> float:
    """The factor a weight at ``from_ts`` keeps at ``to_ts`` (1 if not later)."""
    return 2.0 ** (-(to_ts - from_ts) / half_life_ms) if to_ts > from_ts else 1.0


def decoded(held: list[Any] | None) -> tuple[int, np.ndarray] | None:
    """A stored taste as (as_of, float32 vector), or None."""
    if not held:
        return None
    as_of, scale, text = held
    levels = np.frombuffer(base64.b64decode(text), dtype=np.int8)
    return as_of, levels.astype(np.float32) * np.float32(scale)


def encoded(as_of: int, vector: np.ndarray) -> list[Any] | None:
    """A taste to store: int8 steps of ``max |component| / 127``; None if all zero."""
    top = float(np.max(np.abs(vector)))
    if not math.isfinite(top) or top <= 0:
        return None
    scale = float(f"{top / LEVELS:.6g}")  # 6 digits: a short float in the JSON
    levels = np.clip(np.rint(vector / scale), -LEVELS, LEVELS).astype(np.int8)
    return [as_of, scale, base64.b64encode(levels.tobytes()).decode()]


def fold_in(profile: Profile, adding: Additions, half_life_ms: int) -> None:
    """Add a bundle's additions to the profile's stored taste."""
    held = decoded(profile.get("taste"))
    as_of = max(adding.times) if held is None else max(held[0], *adding.times)
    pairs = zip(adding.times, adding.weights, strict=True)
    coefficients = [w * decay(t, as_of, half_life_ms) for t, w in pairs]
    total: np.ndarray
    if len(coefficients) == 1:  # the common case: one event for the person in the bundle
        total = adding.vectors[0] * np.float32(coefficients[0])
    else:
        total = np.asarray(coefficients, dtype=np.float32) @ np.stack(adding.vectors)
    if held is not None:
        total = total + held[1] * np.float32(decay(held[0], as_of, half_life_ms))
    _store(profile, as_of, total)


def merged(target: Profile, source: Profile, half_life_ms: int) -> None:
    """``source``'s taste summed into ``target``'s, both decayed to the later as-of time."""
    theirs, mine = decoded(source.get("taste")), decoded(target.get("taste"))
    if theirs is None:
        return
    if mine is None:
        target["taste"] = source["taste"]
        return
    as_of = max(mine[0], theirs[0])
    total = mine[1] * np.float32(decay(mine[0], as_of, half_life_ms)) + theirs[1] * np.float32(
        decay(theirs[0], as_of, half_life_ms)
    )
    _store(target, as_of, total)


def _store(profile: Profile, as_of: int, total: np.ndarray) -> None:
    """Keep ``total``, or no taste if it is all zero (decayed past float32's range)."""
    held = encoded(as_of, total)
    if held is None:
        profile.pop("taste", None)
    else:
        profile["taste"] = held


def taste_of(profile: Profile) -> np.ndarray | None:
    """The person's taste as a unit vector, or None if they have none."""
    held = decoded(profile.get("taste"))
    if held is None:
        return None
    norm = float(np.linalg.norm(held[1]))
    return held[1] / np.float32(norm) if norm > 0 else None
