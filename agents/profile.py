"""A user's profile: the per-user state the context agent keeps.

A plain dict (serialized with orjson, one table value per user), bounded in
size. Traits keep their event time and the latest event time wins, so late
or replayed events cannot overwrite newer values.

    {"v": 1, "user": "u1",
     "traits": {"name": ["Alice", 1763712000000], ...},
     "views": [[ts, product_id, category], ...],    # newest last, at most MAX_VIEWS
     "cart": {product_id: [quantity, ts]},
     "visit": [store_id or null, entered_ts, last_ts, trigger_id, fired],
     "moments": {moment_type: ts},                  # last moment of each type
     "updated": ts}
"""

from __future__ import annotations

import bisect
from typing import Any

PROFILE_VERSION = 1
MAX_VIEWS = 20
MAX_TRAITS = 64
MAX_CART = 32
VIEW_EVENTS = frozenset({"Product Viewed", "Product Clicked"})

Profile = dict[str, Any]


def new_profile(user: str) -> Profile:
    return {
        "v": PROFILE_VERSION,
        "user": user,
        "traits": {},
        "views": [],
        "cart": {},
        "visit": [None, 0, 0, "", False],
        "moments": {},
        "updated": 0,
    }


def apply_event(profile: Profile, event: dict[str, Any]) -> None:
    """Fold one normalized event into the profile (location is the moment rules' job)."""
    ts = event["ts"]
    kind = event["kind"]
    if kind in ("identify", "traits"):
        _merge_traits(profile, event.get("traits") or {}, ts)
    elif kind == "track":
        _track(profile, event["name"], event.get("props") or {}, ts)
    profile["updated"] = max(profile["updated"], ts)


def _merge_traits(profile: Profile, traits: dict[str, Any], ts: int) -> None:
    current = profile["traits"]
    for name, value in traits.items():
        if not isinstance(value, str | int | float | bool) and value is not None:
            continue  # nested values are not used by any rule or prompt
        held = current.get(name)
        if held is None and len(current) >= MAX_TRAITS:
            continue
        if held is None or held[1] <= ts:
            current[name] = [value, ts]


def _track(profile: Profile, name: str, props: dict[str, Any], ts: int) -> None:
    product = props.get("product_id")
    if not isinstance(product, str):
        return
    if name in VIEW_EVENTS:
        category = props.get("category") if isinstance(props.get("category"), str) else None
        views = profile["views"]
        bisect.insort(views, [ts, product, category], key=lambda view: view[0])
        del views[:-MAX_VIEWS]
    elif name == "Product Added":
        cart = profile["cart"]
        if product in cart or len(cart) < MAX_CART:
            quantity = props.get("quantity")
            quantity = quantity if isinstance(quantity, int) and quantity > 0 else 1
            cart[product] = [cart.get(product, [0, 0])[0] + quantity, ts]
    elif name == "Product Removed":
        profile["cart"].pop(product, None)
    elif name == "Order Completed":
        profile["cart"].clear()


def trait(profile: Profile, name: str) -> Any:
    held = profile["traits"].get(name)
    return held[0] if held else None


def recent_views(profile: Profile, now_ts: int, window_ms: int) -> list[list[Any]]:
    """Views within ``window_ms`` before ``now_ts``, newest first."""
    return [view for view in reversed(profile["views"]) if now_ts - window_ms <= view[0] <= now_ts]
