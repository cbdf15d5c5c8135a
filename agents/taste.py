"""A person's taste: a recency-decayed sum of the vectors of the products
they viewed, carted and bought.

    profile["taste"] = [as_of, scale, "<base64 of DIM int8>", latest,
                        [product id, coefficient, product id, coefficient, ...]]

The sum is held as of ``as_of`` (an event time): each event's product
counts with the weight of its kind, halved for every ``half_life_ms`` of
event time before ``as_of`` (doubled for every one after). ``latest`` is the
newest event time in it. Since every weight is relative to the same time,
the order events arrive in does not matter: a late one simply counts less.
Two people found to be one are summed at the later of their latest times.

The vector is stored as int8 with one scale (the largest component over
127): 384 bytes, 512 characters of base64, about 550 bytes of JSON per
person, however many events it sums. Each component is off by at most half
a step (``scale``/2), and rounding never saturates, since the scale follows
the largest component.

An event touches no vector: its products (those that have a vector; a model
is never called here) join the list after it with their coefficients, a
few bytes each. Every :data:`PENDING` of them, the list is summed into the
vector (:func:`settle`: one decode, one matrix product, one encode) and
``as_of`` moves to ``latest``. Readers (context selection, the Profile API)
add the list to the vector as they read, with the product vectors in force
then: a product whose vector is gone by then no longer counts.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from agents.profile import VIEW_EVENTS, code
from streams.domain import Event, Profile
from streams.vectors import ProductVectors

LEVELS = 127  # int8 steps either side of zero
# What an event says about taste, per kind. A cart or an order is a choice,
# a view often a glance: each counts several views. Not more, so that one
# order (often a gift, or a need now met) does not outweigh the browsing of
# the sessions around it. A prior, not a fit: on the synthetic shoppers
# (bench/recommend.py, 100 of them) 1/1/1, 1/2/3, 1/3/5 and 1/5/10 gave
# hit-rate@3 0.628, 0.631, 0.627 and 0.610, since their carts and orders
# are of products they had just viewed.
# The event kinds that can say something about taste.
KINDS = frozenset({"track", "order"})
VIEW_WEIGHT = 1.0
CART_WEIGHT = 3.0
BUY_WEIGHT = 5.0
# Products an event adds wait in the profile until this many are pending
# (or until one is this far after the stored as-of time, so that doubled
# weights stay far inside float32's range), then are summed in at once.
PENDING = 8
REBASE = 2.0**20


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


def observe(profile: Profile, event: Event, vectors: ProductVectors, half_life_ms: int) -> bool:
    """Count ``event``'s products that have a vector in the person's taste; if any."""
    found = [(product, weight) for product, weight in weighed(event) if product in vectors]
    if not found:
        return False
    ts = event["ts"]
    held = profile.get("taste") or [ts, 0.0, "", ts, []]
    factor = 2.0 ** ((ts - held[0]) / half_life_ms)
    for product, weight in found:
        # Six decimals: an event some 20 half-lives older than the stored
        # as-of time counts for nothing, as it would once decayed.
        held[4] += [product, round(weight * factor, 6)]
    held[3] = max(held[3], ts)
    profile["taste"] = held
    if len(held[4]) >= 2 * PENDING or factor > REBASE:
        settle(profile, vectors, half_life_ms)
    return True


def decay(from_ts: int, to_ts: int, half_life_ms: int) -> float:
    """The factor a weight at ``from_ts`` keeps at ``to_ts`` (1 if not later)."""
    return 2.0 ** (-(to_ts - from_ts) / half_life_ms) if to_ts > from_ts else 1.0


def summed(held: list[Any], vectors: ProductVectors) -> np.ndarray | None:
    """The stored vector plus the products after it, as of ``held``'s as-of time."""
    pending = held[4]
    rows, coefficients = [], []
    for pid, c in zip(pending[::2], pending[1::2], strict=True):
        vector = vectors.get(pid)
        if vector is not None:
            rows.append(vector)
            coefficients.append(c)
    stored = decoded(held) if held[2] else None
    total = None if stored is None else stored[1]
    if rows:
        adding = np.asarray(coefficients, dtype=np.float32) @ np.stack(rows)
        total = adding if total is None else total + adding
    return total


def current(held: list[Any], vectors: ProductVectors, half_life_ms: int) -> np.ndarray | None:
    """The taste as of its latest event."""
    total = summed(held, vectors)
    return None if total is None else total * np.float32(decay(held[0], held[3], half_life_ms))


def settle(profile: Profile, vectors: ProductVectors, half_life_ms: int) -> None:
    """Sum the products pending into the stored vector, as of the latest event."""
    held = profile["taste"]
    _store(profile, held[3], current(held, vectors, half_life_ms))


def decoded(held: list[Any] | None) -> tuple[int, np.ndarray] | None:
    """A stored taste as (as_of, float32 vector), or None."""
    if not held:
        return None
    levels = np.frombuffer(base64.b64decode(held[2]), dtype=np.int8).astype(np.float32)
    levels *= np.float32(held[1])
    return held[0], levels


def encoded(as_of: int, vector: np.ndarray) -> list[Any] | None:
    """A taste to store: int8 steps of ``max |component| / 127``; None if all zero."""
    top = float(np.abs(vector).max())
    if not math.isfinite(top) or top <= 0:
        return None
    # 6 digits (a short float in the JSON) move the scale by at most 5e-6 of
    # itself, so the largest component rounds to 127, never past it.
    scale = float(f"{top / LEVELS:.6g}")
    steps = vector * np.float32(1 / scale)
    levels = np.rint(steps, out=steps).astype(np.int8)
    return [as_of, scale, base64.b64encode(levels.tobytes()).decode()]


def merged(target: Profile, source: Profile, vectors: ProductVectors, half_life_ms: int) -> None:
    """``source``'s taste summed into ``target``'s, both as of the later latest time."""
    theirs, mine = source.get("taste"), target.get("taste")
    if not theirs:
        return
    if not mine:
        target["taste"] = theirs
        return
    latest = max(mine[3], theirs[3])
    total = None
    for held in (mine, theirs):
        vector = current(held, vectors, half_life_ms)
        if vector is not None:
            vector = vector * np.float32(decay(held[3], latest, half_life_ms))
            total = vector if total is None else total + vector
    _store(target, latest, total)


def _store(profile: Profile, as_of: int, total: np.ndarray | None) -> None:
    """Keep ``total`` as of ``as_of``, or no taste if there is none (all zero,
    or decayed past float32's range)."""
    held = None if total is None else encoded(as_of, total)
    if held is None:
        profile.pop("taste", None)
    else:
        profile["taste"] = [*held, as_of, []]


def taste_of(profile: Profile, vectors: ProductVectors) -> np.ndarray | None:
    """The person's taste as a unit vector, or None if they have none."""
    held = profile.get("taste")
    total = summed(held, vectors) if held else None
    norm = float(np.linalg.norm(total)) if total is not None else 0.0
    return total / np.float32(norm) if total is not None and norm > 0 else None


def latest(profile: Profile) -> int | None:
    """The event time of the newest event in the person's taste, if any."""
    held = profile.get("taste")
    return held[3] if held else None


# What a person is after now: their latest few product views, beside the
# long-run taste, each as a unit vector and with equal weight. Shoppers keep
# to one thing a session; the taste alone, summed over weeks, lags behind
# that. On the synthetic shoppers (bench/recommend.py, 100 of them) the
# latest 3 views at weights 0, 1, 2 and 4 gave hit-rate@3 0.627, 0.696,
# 0.697 and 0.691.
SESSION_VIEWS = 3
SESSION_WEIGHT = 1.0


def intent_of(profile: Profile, vectors: ProductVectors) -> np.ndarray | None:
    """The person's taste turned toward their latest views, as a unit vector;
    None if they have no taste."""
    taste = taste_of(profile, vectors)
    if taste is None:
        return None
    latest_views = (vectors.get(view[1]) for view in reversed(profile.get("views") or ()))
    recent = [vector for vector in latest_views if vector is not None][:SESSION_VIEWS]
    if not recent:
        return taste
    session = np.sum(recent, axis=0)
    norm = float(np.linalg.norm(session))
    if norm == 0:
        return taste
    both = taste + np.float32(SESSION_WEIGHT / norm) * session
    return both / np.float32(np.linalg.norm(both))
