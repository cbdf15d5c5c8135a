"""A user's profile: the per-user state the context agent keeps.

A plain dict (serialized with orjson, one table value per user), bounded in
size. Traits keep their event time and the latest event time wins, so late
or replayed events cannot overwrite newer values.

    {"v": 2, "user": "u1",
     "traits": {"name": ["Alice", 1763712000000], ...},
     "views": [[ts, product_id, category], ...],    # newest last, at most MAX_VIEWS
     "recent": ["ts|kind|product|label", ...],      # recent events, oldest first, MAX_RECENT
     "cart": {product_id: [quantity, ts]},
     "visit": [store_id or null, entered_ts, last_ts, trigger_id, fired],
     "last_store": [store_id, entered_ts, last_ts] or null,   # the latest store visit
     "moments": {moment_type: ts},                  # last moment of each type
     "orders": [count, total, last_ts],
     "tickets": {ticket_id: [status, ts]},          # at most MAX_TICKETS
     "offers": [[offer_id, moment_type, ts, variant, group, channel], ...],  # moments
                                                    # offered or held out, at most MAX_OFFERS
     "outcomes": {offer_id: {action: ts}},          # feedback and conversions, MAX_OUTCOMES
     "ids": ["a-7f3", ...],                         # other ids merged into this one
     "channels": {channel: [delivered, opened, redeemed]},  # agents/channels.py
     "tz": [time zone, ts] or null,                 # the latest Segment context.timezone
     "seen": "AbC-12_x...",                         # last DEDUPE_WINDOW event ids, 8 chars each
     "tiles": {...}, "session": [...],              # windowed features (agents/features.py)
     "taste": [as_of, scale, "...", latest, [...]],  # the taste vector (agents/taste.py)
     "n": events applied, "updated": ts}

A profile merged into another keeps only ``{"user", "merged_into", ...}``:
events that still arrive for the old id are forwarded to the new one.

Every field is bounded, so a profile is too: :func:`max_profile_bytes` is
the bound, and tests/unit/test_profile.py fills a profile to it. Few
objects per profile matter as much as few bytes, since each bundle decodes
and re-encodes the profiles it touches: remembered event ids are one string
and recent events one string each.
"""

from __future__ import annotations

import binascii
import bisect
import hashlib
import math
from typing import Any, cast

from streams.domain import Event, Profile

PROFILE_VERSION = 4
MAX_VIEWS = 20
MAX_RECENT = 16
MAX_OFFERS = 16
MAX_TRAITS = 64
# Characters kept of a trait's name and of a string trait's value.
MAX_TRAIT_NAME = 64
MAX_TRAIT_TEXT = 256
MAX_LABEL = 64
# Product ids, categories, ticket and offer ids longer than this are not kept.
MAX_CODE = 64
MAX_CART = 32
MAX_TICKETS = 16
MAX_OUTCOMES = 32
MAX_IDS = 32
# Feedback counts per channel halve past this (agents/channels.py).
MAX_CHANNEL_COUNT = 64
# A duplicate is dropped if its id is among the profile's last this many.
DEDUPE_WINDOW = 128
# The largest a profile can be, with every field full of the longest values
# kept (tests/unit/test_profile.py builds one). A typical one is 1-3 KB.
MAX_PROFILE_BYTES = 600_000
TOKEN = 8  # characters per remembered event id: 48 bits, URL-safe base64
_URL_SAFE = bytes.maketrans(b"+/", b"-_")
VIEW_EVENTS = frozenset({"Product Viewed", "Product Clicked"})


def new_profile(user: str) -> Profile:
    return {
        "v": PROFILE_VERSION,
        "user": user,
        "traits": {},
        "views": [],
        "recent": [],
        "cart": {},
        "visit": [None, 0, 0, "", False],
        "last_store": None,
        "moments": {},
        "orders": [0, 0.0, 0],
        "tickets": {},
        "offers": [],
        "outcomes": {},
        "ids": [],
        "channels": {},
        "tz": None,
        "seen": "",
        "n": 0,
        "updated": 0,
    }


def upgraded(profile: Profile) -> Profile:
    """A profile stored by an older version, with the fields it lacks."""
    if profile.get("v") != PROFILE_VERSION and "merged_into" not in profile:
        stored = cast(dict[str, Any], profile)  # as stored, whatever its version
        if isinstance(stored.get("seen"), list):  # version 2: 56-bit integers
            profile["seen"] = "".join(
                _token(h.to_bytes(7, "big")) for h in stored["seen"][-DEDUPE_WINDOW:]
            )
        for field, value in new_profile(profile["user"]).items():
            stored.setdefault(field, value)
        profile["v"] = PROFILE_VERSION
    return profile


def event_token(event_id: str) -> str:
    """48 bits of the event id, as :data:`TOKEN` characters."""
    return _token(hashlib.blake2b(event_id.encode(), digest_size=7).digest())


def _token(digest: bytes) -> str:
    # base64.urlsafe_b64encode, inlined: this runs once per event applied.
    return binascii.b2a_base64(digest[:6], newline=False).translate(_URL_SAFE).decode()


def _remembered(seen: str, token: str) -> bool:
    at = seen.find(token)
    while at != -1:
        if at % TOKEN == 0:
            return True
        at = seen.find(token, at + 1)
    return False


def first_sight(profile: Profile, event_id: str) -> bool:
    """Record ``event_id`` as applied; False if it already was (a duplicate)."""
    token = event_token(event_id)
    seen = profile["seen"]
    if _remembered(seen, token):
        return False
    profile["seen"] = (seen + token)[-DEDUPE_WINDOW * TOKEN :]
    return True


def apply_event(profile: Profile, event: Event) -> None:
    """Fold one normalized event into the profile (location is the moment rules' job)."""
    ts = event["ts"]
    kind = event["kind"]
    props = event.get("props") or {}
    if kind in ("identify", "traits"):
        _merge_traits(profile, event.get("traits") or {}, ts)
    elif kind == "track":
        _track(profile, event["name"], props, ts)
    elif kind == "order":
        _order(profile, props["total"], ts)
    elif kind == "ticket":
        ticket = code(props["ticket_id"])
        if ticket is not None:
            bounded_put(profile["tickets"], ticket, [str(props["status"])[:MAX_CODE], ts],
                         MAX_TICKETS)  # fmt: skip
    elif kind == "loyalty":
        _merge_traits(profile, {"loyalty_tier": props["tier"]}, ts)
        if props.get("points") is not None:
            _merge_traits(profile, {"loyalty_points": props["points"]}, ts)
    elif kind == "group":
        _merge_traits(profile, {"group_id": props["group_id"]}, ts)
    elif kind == "feedback" and (offer := code(props["offer_id"])) is not None:
        outcome = profile["outcomes"].get(offer)
        if outcome is None:
            outcome = {}
            bounded_put(profile["outcomes"], offer, outcome, MAX_OUTCOMES)
        outcome[event["name"]] = min(ts, outcome.get(event["name"], ts))
    if "tz" in event:
        _merge_zone(profile, [event["tz"], ts])
    _remember_event(profile, event)
    profile["n"] += 1
    profile["updated"] = max(profile["updated"], ts)


def code(value: Any) -> str | None:
    """An id or a category short enough to keep in state, else None."""
    return value if isinstance(value, str) and 0 < len(value) <= MAX_CODE else None


def _remember_event(profile: Profile, event: Event) -> None:
    """Keep the event in the profile's recent events, in event-time order."""
    props = event.get("props") or {}
    product = (code(props.get("product_id")) or "").replace("|", "/")
    label = event.get("name") or props.get("order_id") or props.get("ticket_id") or ""
    entry = f"{event['ts']}|{event['kind']}|{product}|{str(label)[:MAX_LABEL]}"
    recent = profile["recent"]
    if not recent or entry >= recent[-1]:  # event times have 13 digits: text order is time order
        recent.append(entry)
    else:
        bisect.insort(recent, entry)
    del recent[:-MAX_RECENT]


def recent_events(profile: Profile) -> list[dict[str, Any]]:
    """The recent events, newest first, as the Profile API shows them."""
    out = []
    for entry in reversed(profile.get("recent") or []):
        ts, kind, product, label = entry.split("|", 3)
        event: dict[str, Any] = {"timestamp": int(ts), "type": kind}
        if label:
            event["name"] = label
        if product:
            event["product_id"] = product
        out.append(event)
    return out


def remember_offer(
    profile: Profile,
    offer_id: str,
    moment_type: str,
    ts: int,
    variant: str | None = None,
    group: str = "offer",
    channel: str | None = None,
) -> None:
    """A moment that led to an offer (by ``channel``), or was held out (agents/attribution.py)."""
    offers = profile["offers"]
    if not any(held[0] == offer_id for held in offers):
        offers.append([offer_id, moment_type, ts, variant, group, channel])
        del offers[:-MAX_OFFERS]


def merge_profiles(target: Profile, source: Profile) -> None:
    """Fold ``source`` (an id now known to be the same person) into ``target``.

    Order-free: merging A into B gives the same facts whichever events each
    had, since every field keeps event times and the newest wins.
    """
    _merge_traits_held(target, source["traits"])
    views = sorted({tuple(v): v for v in target["views"] + source["views"]}.values(),
                   key=lambda view: view[0])  # fmt: skip
    target["views"] = views[-MAX_VIEWS:]
    target["recent"] = sorted(set(target["recent"] + source["recent"]))[-MAX_RECENT:]
    offers = {held[0]: held for held in target["offers"] + source["offers"]}
    target["offers"] = sorted(offers.values(), key=lambda held: held[2])[-MAX_OFFERS:]
    for product, held in source["cart"].items():
        mine = target["cart"].get(product)
        if (mine is None and len(target["cart"]) < MAX_CART) or (
            mine is not None and mine[1] < held[1]
        ):
            target["cart"][product] = held
    if source["visit"][2] > target["visit"][2]:
        target["visit"] = source["visit"]
    theirs, ours = source.get("last_store"), target.get("last_store")
    if theirs and (not ours or theirs[2] > ours[2]):
        target["last_store"] = theirs
    for kind, ts in source["moments"].items():
        target["moments"][kind] = max(ts, target["moments"].get(kind, ts))
    count, total, last = source["orders"]
    mine_count, mine_total, mine_last = target["orders"]
    target["orders"] = [mine_count + count, round(mine_total + total, 2), max(mine_last, last)]
    for ticket, held in source["tickets"].items():
        if ticket not in target["tickets"] or target["tickets"][ticket][1] < held[1]:
            bounded_put(target["tickets"], ticket, held, MAX_TICKETS)
    for offer, outcome in source["outcomes"].items():
        known = target["outcomes"].setdefault(offer, {})
        for action, ts in outcome.items():
            known[action] = min(ts, known.get(action, ts))
    while len(target["outcomes"]) > MAX_OUTCOMES:
        del target["outcomes"][next(iter(target["outcomes"]))]
    for channel, counts in source["channels"].items():
        add_channel_counts(target, channel, counts)
    if source["tz"]:
        _merge_zone(target, source["tz"])
    ids = [source["user"], *source["ids"], *target["ids"]]
    target["ids"] = list(dict.fromkeys(i for i in ids if i != target["user"]))[:MAX_IDS]
    seen = target["seen"]
    tokens = (source["seen"][i : i + TOKEN] for i in range(0, len(source["seen"]), TOKEN))
    target["seen"] = ("".join(t for t in tokens if not _remembered(seen, t)) + seen)[
        -DEDUPE_WINDOW * TOKEN :
    ]
    target["n"] += source["n"]
    target["updated"] = max(target["updated"], source["updated"])


def bounded_put(mapping: dict[str, Any], key: str, value: Any, limit: int) -> None:
    """Set ``key``, evicting the oldest-inserted entries beyond ``limit``."""
    mapping.pop(key, None)
    mapping[key] = value
    while len(mapping) > limit:
        del mapping[next(iter(mapping))]


def _order(profile: Profile, total: float, ts: int) -> None:
    """An order: counted, its total added, and the cart as it was then emptied."""
    count, held, last = profile["orders"]
    profile["orders"] = [count + 1, round(held + total, 2), max(last, ts)]
    _drop_older(profile["cart"], ts)


def _order_total(props: dict[str, Any]) -> float:
    """A Segment order's ``total`` (else ``revenue``), if it is a sensible amount; else 0."""
    value = props.get("total", props.get("revenue"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) and 0 <= value <= 1e9 else 0.0


def _drop_older(cart: dict[str, list[Any]], ts: int) -> None:
    """An order empties the cart as it was then; later additions stay."""
    for product in [p for p, (_, added) in cart.items() if added <= ts]:
        del cart[product]


def add_channel_counts(profile: Profile, channel: str, counts: list[int]) -> None:
    """Add [delivered, opened, redeemed] to ``channel``'s; all halve once one passes
    MAX_CHANNEL_COUNT, so recent habits weigh more than old ones (agents/channels.py)."""
    held = [a + b for a, b in zip(profile["channels"].get(channel, [0, 0, 0]), counts, strict=True)]
    while max(held) > MAX_CHANNEL_COUNT:
        held = [n // 2 for n in held]
    profile["channels"][channel] = held


def _merge_zone(profile: Profile, held: list[Any]) -> None:
    """The person's time zone: the one of their latest event that named one."""
    mine = profile["tz"]
    if mine is None or mine[1] <= held[1]:
        profile["tz"] = held


def _merge_traits_held(profile: Profile, held: dict[str, list[Any]]) -> None:
    current = profile["traits"]
    for name, (value, ts) in held.items():
        mine = current.get(name)
        if mine is None and len(current) >= MAX_TRAITS:
            continue
        if mine is None or mine[1] <= ts:
            current[name] = [value, ts]


def _merge_traits(profile: Profile, traits: dict[str, Any], ts: int) -> None:
    # Nested values are not used by any rule or prompt; long text is cut.
    scalars = {
        name[:MAX_TRAIT_NAME]: [value[:MAX_TRAIT_TEXT] if isinstance(value, str) else value, ts]
        for name, value in traits.items()
        if value is None or isinstance(value, str | int | float | bool)
    }
    _merge_traits_held(profile, scalars)


def _track(profile: Profile, name: str, props: dict[str, Any], ts: int) -> None:
    if name == "Order Completed":  # Segment's order: the same as a CRM order record
        _order(profile, _order_total(props), ts)
        return
    product = code(props.get("product_id"))
    if product is None:
        return
    if name in VIEW_EVENTS:
        category = code(props.get("category"))
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


def trait(profile: Profile, name: str) -> Any:
    held = profile["traits"].get(name)
    return held[0] if held else None


def recent_views(profile: Profile, now_ts: int, window_ms: int) -> list[list[Any]]:
    """Views within ``window_ms`` before ``now_ts``, newest first."""
    return [view for view in reversed(profile["views"]) if now_ts - window_ms <= view[0] <= now_ts]
