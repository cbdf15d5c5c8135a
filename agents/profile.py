"""A user's profile: the per-user state the context agent keeps.

A plain dict (serialized with orjson, one table value per user), bounded in
size. Traits keep their event time and the latest event time wins, so late
or replayed events cannot overwrite newer values.

    {"v": 2, "user": "u1",
     "traits": {"name": ["Alice", 1763712000000], ...},
     "views": [[ts, product_id, category], ...],    # newest last, at most MAX_VIEWS
     "cart": {product_id: [quantity, ts]},
     "visit": [store_id or null, entered_ts, last_ts, trigger_id, fired],
     "moments": {moment_type: ts},                  # last moment of each type
     "orders": [count, total, last_ts],
     "tickets": {ticket_id: [status, ts]},          # at most MAX_TICKETS
     "outcomes": {offer_id: {action: ts}},          # offer feedback, at most MAX_OUTCOMES
     "ids": ["a-7f3", ...],                         # other ids merged into this one
     "seen": [hash, ...],                           # last DEDUPE_WINDOW event ids applied
     "tiles": {...}, "session": [...],              # windowed features (agents/features.py)
     "n": events applied, "updated": ts}

A profile merged into another keeps only ``{"user", "merged_into", ...}``:
events that still arrive for the old id are forwarded to the new one.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Any

PROFILE_VERSION = 2
MAX_VIEWS = 20
MAX_TRAITS = 64
MAX_CART = 32
MAX_TICKETS = 16
MAX_OUTCOMES = 32
MAX_IDS = 32
# A duplicate is dropped if its id is among the profile's last this many.
DEDUPE_WINDOW = 128
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
        "orders": [0, 0.0, 0],
        "tickets": {},
        "outcomes": {},
        "ids": [],
        "seen": [],
        "n": 0,
        "updated": 0,
    }


def upgraded(profile: Profile) -> Profile:
    """A profile stored by an older version, with the fields it lacks."""
    if profile.get("v") != PROFILE_VERSION and "merged_into" not in profile:
        for field, value in new_profile(profile["user"]).items():
            profile.setdefault(field, value)
        profile["v"] = PROFILE_VERSION
    return profile


def event_hash(event_id: str) -> int:
    """56 bits of the event id: small to keep, exact enough to compare."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=7).digest())


def first_sight(profile: Profile, event_id: str) -> bool:
    """Record ``event_id`` as applied; False if it already was (a duplicate)."""
    digest = event_hash(event_id)
    seen = profile["seen"]
    if digest in seen:
        return False
    seen.append(digest)
    if len(seen) > DEDUPE_WINDOW:
        del seen[0]
    return True


def apply_event(profile: Profile, event: dict[str, Any]) -> None:
    """Fold one normalized event into the profile (location is the moment rules' job)."""
    ts = event["ts"]
    kind = event["kind"]
    props = event.get("props") or {}
    if kind in ("identify", "traits"):
        _merge_traits(profile, event.get("traits") or {}, ts)
    elif kind == "track":
        _track(profile, event["name"], props, ts)
    elif kind == "order":
        count, total, last = profile["orders"]
        profile["orders"] = [count + 1, round(total + props["total"], 2), max(last, ts)]
        _drop_older(profile["cart"], ts)
    elif kind == "ticket":
        _bounded_put(profile["tickets"], props["ticket_id"], [props["status"], ts], MAX_TICKETS)
    elif kind == "loyalty":
        _merge_traits(profile, {"loyalty_tier": props["tier"]}, ts)
        if props.get("points") is not None:
            _merge_traits(profile, {"loyalty_points": props["points"]}, ts)
    elif kind == "group":
        _merge_traits(profile, {"group_id": props["group_id"]}, ts)
    elif kind == "feedback":
        outcome = profile["outcomes"].get(props["offer_id"])
        if outcome is None:
            outcome = {}
            _bounded_put(profile["outcomes"], props["offer_id"], outcome, MAX_OUTCOMES)
        outcome[event["name"]] = min(ts, outcome.get(event["name"], ts))
    profile["n"] += 1
    profile["updated"] = max(profile["updated"], ts)


def merge_profiles(target: Profile, source: Profile) -> None:
    """Fold ``source`` (an id now known to be the same person) into ``target``.

    Order-free: merging A into B gives the same facts whichever events each
    had, since every field keeps event times and the newest wins.
    """
    _merge_traits_held(target, source["traits"])
    views = sorted({tuple(v): v for v in target["views"] + source["views"]}.values(),
                   key=lambda view: view[0])  # fmt: skip
    target["views"] = views[-MAX_VIEWS:]
    for product, held in source["cart"].items():
        mine = target["cart"].get(product)
        if (mine is None and len(target["cart"]) < MAX_CART) or (
            mine is not None and mine[1] < held[1]
        ):
            target["cart"][product] = held
    if source["visit"][2] > target["visit"][2]:
        target["visit"] = source["visit"]
    for kind, ts in source["moments"].items():
        target["moments"][kind] = max(ts, target["moments"].get(kind, ts))
    count, total, last = source["orders"]
    mine_count, mine_total, mine_last = target["orders"]
    target["orders"] = [mine_count + count, round(mine_total + total, 2), max(mine_last, last)]
    for ticket, held in source["tickets"].items():
        if ticket not in target["tickets"] or target["tickets"][ticket][1] < held[1]:
            _bounded_put(target["tickets"], ticket, held, MAX_TICKETS)
    for offer, outcome in source["outcomes"].items():
        mine = target["outcomes"].setdefault(offer, {})
        for action, ts in outcome.items():
            mine[action] = min(ts, mine.get(action, ts))
    while len(target["outcomes"]) > MAX_OUTCOMES:
        del target["outcomes"][next(iter(target["outcomes"]))]
    ids = [source["user"], *source["ids"], *target["ids"]]
    target["ids"] = list(dict.fromkeys(i for i in ids if i != target["user"]))[:MAX_IDS]
    seen = [h for h in source["seen"] if h not in target["seen"]] + target["seen"]
    target["seen"] = seen[-DEDUPE_WINDOW:]
    target["n"] += source["n"]
    target["updated"] = max(target["updated"], source["updated"])


def _bounded_put(mapping: dict[str, Any], key: str, value: Any, limit: int) -> None:
    """Set ``key``, evicting the oldest-inserted entries beyond ``limit``."""
    mapping.pop(key, None)
    mapping[key] = value
    while len(mapping) > limit:
        del mapping[next(iter(mapping))]


def _drop_older(cart: dict[str, list[Any]], ts: int) -> None:
    """An order empties the cart as it was then; later additions stay."""
    for product in [p for p, (_, added) in cart.items() if added <= ts]:
        del cart[product]


def _merge_traits_held(profile: Profile, held: dict[str, list[Any]]) -> None:
    current = profile["traits"]
    for name, (value, ts) in held.items():
        mine = current.get(name)
        if mine is None and len(current) >= MAX_TRAITS:
            continue
        if mine is None or mine[1] <= ts:
            current[name] = [value, ts]


def _merge_traits(profile: Profile, traits: dict[str, Any], ts: int) -> None:
    # Nested values are not used by any rule or prompt.
    scalars = {name: [value, ts] for name, value in traits.items()
               if value is None or isinstance(value, str | int | float | bool)}  # fmt: skip
    _merge_traits_held(profile, scalars)


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
        _drop_older(profile["cart"], ts)


def trait(profile: Profile, name: str) -> Any:
    held = profile["traits"].get(name)
    return held[0] if held else None


def recent_views(profile: Profile, now_ts: int, window_ms: int) -> list[list[Any]]:
    """Views within ``window_ms`` before ``now_ts``, newest first."""
    return [view for view in reversed(profile["views"]) if now_ts - window_ms <= view[0] <= now_ts]
