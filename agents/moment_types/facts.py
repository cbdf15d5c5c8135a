"""The profile facts several moment types' contexts draw on: the name and
tier, and the products viewed lately, ranked for a store."""

from __future__ import annotations

from agents.profile import recent_views, trait
from agents.replies import steer
from models.context import MAX_PRODUCTS, first_name_of, trait_text
from streams.domain import Profile
from streams.reference import Product, Reference, Store


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
    profile: Profile, now_ts: int, window_ms: int, store: Store, reference: Reference
) -> list[Product]:
    seen: dict[str, tuple[int, int]] = {}
    for ts, product_id, _category in recent_views(profile, now_ts, window_ms):
        product = reference.products.get(product_id)
        if product is None or product_id in seen:
            continue
        seen[product_id] = (int(product.category in store.categories), ts)
    ranked = sorted(seen, key=lambda pid: seen[pid], reverse=True)
    # What the customer said in replies filters and reorders (agents/replies.py).
    steered = steer(profile, (reference.products[pid] for pid in ranked), store, reference)
    return steered[:MAX_PRODUCTS]
