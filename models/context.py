"""Context selection: the slice of a profile that matters to one moment.

The prompt gets what bears on this moment, not the whole profile: the
customer's first name and loyalty tier, and, for a store entry, the few
recently viewed products that relate to the store they walked into, ranked
by relation to the store and recency; for an abandoned cart, the products
in the cart, dearest first. Facts are cut, least relevant first, until the prompt data fits a token
budget (``KAIROS_LLM_CONTEXT_TOKENS``). What was used is recorded in the
offer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from agents.profile import Profile, recent_views, trait
from streams.reference import Product, Reference, Store

MAX_PRODUCTS = 3
# Prompt data (the customer facts, as JSON) is cut to about this many tokens.
DEFAULT_BUDGET_TOKENS = 64
MAX_NAME = 40


@dataclass(frozen=True)
class ContextSlice:
    store: Store | None  # None: not about a store (an abandoned cart)
    first_name: str | None
    loyalty_tier: str | None
    favorite_category: str | None
    products: tuple[Product, ...]
    used: tuple[str, ...] = field(default=())
    moment_type: str = "store_entry"

    def as_prompt_data(self) -> dict[str, Any]:
        """The facts the model may use, as plain data."""
        data: dict[str, Any]
        if self.store is None:
            data = {"cart": [p.name for p in self.products]}
        else:
            data = {"store": self.store.name, "recently_viewed": [p.name for p in self.products]}
        if self.first_name:
            data["first_name"] = self.first_name
        if self.loyalty_tier:
            data["loyalty_tier"] = self.loyalty_tier
        if self.favorite_category and not self.products:
            data["favorite_category"] = self.favorite_category
        return data


def select_context(
    profile: Profile,
    moment: dict[str, Any],
    reference: Reference,
    *,
    recent_interest_ms: int,
    budget_tokens: int = DEFAULT_BUDGET_TOKENS,
) -> ContextSlice:
    """The facts for this moment, ranked, and cut to ``budget_tokens`` of prompt data."""
    if moment.get("type") == "cart_abandoned":
        chosen = _cart_context(profile, moment, reference)
    elif moment.get("type") == "win_back":
        chosen = _win_back_context(profile, moment, reference)
    else:
        chosen = _store_context(profile, moment, reference, recent_interest_ms)
    return within_budget(chosen, budget_tokens)


def estimated_tokens(data: dict[str, Any]) -> int:
    """About four characters of JSON per token, as Llama tokenizers average on English."""
    return -(-len(orjson.dumps(data)) // 4)


def within_budget(context: ContextSlice, budget_tokens: int) -> ContextSlice:
    """Drop the least relevant facts until the prompt data fits the budget.

    Kept longest: the store or cart itself, the top product, the name; then
    the other products in rank order; the loyalty tier and the favorite
    category go first. ``used`` lists only what stayed.
    """
    while estimated_tokens(context.as_prompt_data()) > budget_tokens:
        if context.favorite_category and not context.products:
            context = replace(context, favorite_category=None)
        elif context.loyalty_tier:
            context = replace(context, loyalty_tier=None)
        elif len(context.products) > 1:
            context = replace(context, products=context.products[:-1])
        elif context.first_name:
            context = replace(context, first_name=None)
        elif context.products:
            context = replace(context, products=())
        else:
            break  # the store or cart alone: nothing more to cut
    kept = {f"view:{p.id}" for p in context.products} | {f"cart:{p.id}" for p in context.products}
    if context.first_name:
        kept.add("trait:name")
    if context.loyalty_tier:
        kept.add("trait:loyalty_tier")
    if context.favorite_category and not context.products:
        kept.add("trait:favorite_category")
    return replace(context, used=tuple(u for u in context.used if u in kept))


def _store_context(
    profile: Profile, moment: dict[str, Any], reference: Reference, recent_interest_ms: int
) -> ContextSlice:
    store = reference.stores[moment["store_id"]]
    used: list[str] = []
    first_name = _first_name(trait(profile, "first_name") or trait(profile, "name"))
    if first_name:
        used.append("trait:name")
    tier = _short_text(trait(profile, "loyalty_tier"))
    if tier:
        used.append("trait:loyalty_tier")
    favorite = _short_text(trait(profile, "favorite_category"))
    products = _rank_products(profile, moment["event_ts"], recent_interest_ms, store, reference)
    used.extend(f"view:{p.id}" for p in products)
    if favorite and not products:
        used.append("trait:favorite_category")
    return ContextSlice(store, first_name, tier, favorite, tuple(products), tuple(used))


def _cart_context(profile: Profile, moment: dict[str, Any], reference: Reference) -> ContextSlice:
    known = [reference.products[p] for p in moment["cart"] if p in reference.products]
    products = sorted(known, key=lambda product: product.price, reverse=True)[:MAX_PRODUCTS]
    used = [f"cart:{p.id}" for p in products]
    first_name = _first_name(trait(profile, "first_name") or trait(profile, "name"))
    if first_name:
        used.insert(0, "trait:name")
    tier = _short_text(trait(profile, "loyalty_tier"))
    if tier:
        used.insert(1 if first_name else 0, "trait:loyalty_tier")
    return ContextSlice(
        None, first_name, tier, None, tuple(products), tuple(used), "cart_abandoned"
    )


# A lapsed shopper's views are old: any still remembered may be used.
WIN_BACK_VIEWS_MS = 365 * 86_400_000


def _win_back_context(
    profile: Profile, moment: dict[str, Any], reference: Reference
) -> ContextSlice:
    store = reference.stores.get(moment["store_id"]) or next(iter(reference.stores.values()))
    base = _store_context(
        profile, dict(moment, type="store_entry", store_id=store.id), reference,
        WIN_BACK_VIEWS_MS,
    )  # fmt: skip
    return ContextSlice(
        store, base.first_name, base.loyalty_tier, base.favorite_category, base.products,
        base.used, "win_back",
    )  # fmt: skip


def _rank_products(
    profile: Profile, now_ts: int, window_ms: int, store: Store, reference: Reference
) -> list[Product]:
    seen: dict[str, tuple[int, int]] = {}
    for ts, product_id, _category in recent_views(profile, now_ts, window_ms):
        product = reference.products.get(product_id)
        if product is None or product_id in seen:
            continue
        seen[product_id] = (int(product.category in store.categories), ts)
    ranked = sorted(seen, key=lambda pid: seen[pid], reverse=True)
    return [reference.products[pid] for pid in ranked[:MAX_PRODUCTS]]


def _short_text(value: Any, limit: int = 24) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = " ".join("".join(c for c in value if c.isprintable()).split())
    return cleaned[:limit] or None


def _first_name(value: Any) -> str | None:
    """A first name, or nothing: user-supplied text is never passed on whole."""
    text = _short_text(value, MAX_NAME)
    if not text:
        return None
    first = text.split()[0]
    return first if first.replace("-", "").replace("'", "").isalpha() else None
