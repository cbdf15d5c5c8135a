"""The profile facts several moment types' contexts draw on: the name and
tier, and the products for a store: viewed lately, or like the person's taste.

Without a taste vector (agents/taste.py) the products are the recent views,
those of the store's categories first, then the newest. With one, the
catalog products of the store's categories nearest the taste join them, and
all are ranked by similarity to the taste plus :data:`STORE_WEIGHT` for a
product the store carries (the moment) and :data:`VIEWED_WEIGHT` for one
the person looked at: a viewed product the store carries comes first, then
the store's products nearest the taste, then views the store has no shelf for.
"""

from __future__ import annotations

import numpy as np

from agents.profile import recent_views, trait
from agents.replies import steer
from agents.taste import intent_of
from models.context import MAX_PRODUCTS, first_name_of, trait_text
from streams.domain import Profile
from streams.reference import Product, Reference, Store
from streams.vectors import ProductVectors

# With all-MiniLM-L6-v2, the demo catalog's products have cosines of 0.12-0.59
# (mean 0.39) within a category and -0.13-0.38 (mean 0.13, 90% under 0.28)
# across: the store's shelf outweighs any difference in taste, and a view
# outweighs a small one, so an unviewed product must be clearly nearer the
# taste to pass a viewed one.
STORE_WEIGHT = 1.0
VIEWED_WEIGHT = 0.25
# An unviewed product less like the taste than this is not suggested at all:
# above 9 in 10 cross-category cosines, so a product of an unrelated kind is
# no reason to name it, whatever shelf it is on.
MIN_SIMILARITY = 0.3


def name_and_tier(profile: Profile) -> tuple[str | None, str | None, list[str]]:
    """The first name and loyalty tier, and the ``used`` entries for them."""
    used: list[str] = []
    first_name = first_name_of(trait(profile, "first_name") or trait(profile, "name"))
    if first_name:
        used.append("trait:name")
    tier = trait_text(trait(profile, "loyalty_tier"))
    if tier:
        used.append("trait:loyalty_tier")
    return first_name, tier, used


def rank_products(
    profile: Profile, now_ts: int, window_ms: int, store: Store, reference: Reference,
    vectors: ProductVectors | None = None,
) -> list[Product]:  # fmt: skip
    """The products for a moment at ``store``, best first, at most MAX_PRODUCTS:
    those viewed within ``window_ms`` before ``now_ts`` and, with a taste
    vector and product ``vectors``, the store's catalog products nearest it."""
    seen: dict[str, int] = {}  # viewed product id -> its latest view
    for ts, product_id, _category in recent_views(profile, now_ts, window_ms):
        if product_id in reference.products and product_id not in seen:
            seen[product_id] = ts
    taste = intent_of(profile, vectors) if vectors is not None else None
    if taste is None or vectors is None:
        carried = {pid: int(reference.products[pid].category in store.categories) for pid in seen}
        ranked = sorted(seen, key=lambda pid: (carried[pid], seen[pid]), reverse=True)
    else:
        scores = _by_taste(taste, vectors, seen, store, reference)
        ranked = sorted(scores, key=lambda pid: (scores[pid], seen.get(pid, 0)), reverse=True)
    # What the customer said in replies filters and reorders (agents/replies.py).
    steered = steer(profile, (reference.products[pid] for pid in ranked), store, reference)
    return steered[:MAX_PRODUCTS]


def _by_taste(
    taste: np.ndarray,
    vectors: ProductVectors,
    seen: dict[str, int],
    store: Store,
    reference: Reference,
) -> dict[str, float]:
    """Each candidate's score: the viewed products and the store's nearest the taste."""
    shelf = {p.id for p in reference.products.values() if p.category in store.categories}
    found = vectors.nearest(taste, MAX_PRODUCTS + len(seen), among=shelf)
    nearest = {pid: cosine for pid, cosine in found if cosine >= MIN_SIMILARITY or pid in seen}
    scores = {}
    for pid in {*seen, *nearest}:
        vector = vectors.get(pid)
        similarity = nearest.get(pid, float(vector @ taste) if vector is not None else 0.0)
        in_store = reference.products[pid].category in store.categories
        scores[pid] = similarity + STORE_WEIGHT * in_store + VIEWED_WEIGHT * (pid in seen)
    return scores
