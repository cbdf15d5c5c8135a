"""Moment rules: when a user's state says "now is the time to reach out".

In-store entry: a location ping puts the user inside a store's geofence
(coming from elsewhere), and the user showed interest (a product view
within the rules file's ``recent_interest_minutes`` before the visit) or
has a known favorite category; not opted out; not within the cooldown since
the last in-store moment. Holdout, quiet hours and caps: agents/rules.py.

Rules are judged in event time, on the user's state after every event, not
only on the ping: clickstream and location arrive on different topics, so a
view can be processed after the ping that follows it. The visit is
remembered, and a view that arrives late still fires the visit's moment
while the visit lasts. The moment's id comes from the entry ping, so it is
the same whichever event completed the rule.
"""

from __future__ import annotations

import hashlib
from typing import Any

from agents.profile import Profile, recent_views, trait
from streams.reference import Reference

STORE_ENTRY = "store_entry"
CART_ABANDONED = "cart_abandoned"
WIN_BACK = "win_back"
# Pings in the same store closer than this belong to one visit, and a visit
# is over this long after its last ping.
SAME_VISIT_MS = 30 * 60 * 1000
OPT_OUT_TRAITS = ("marketing_opt_out", "unsubscribed")


def moment_id(kind: str, user: str, subject: str, trigger_id: str) -> str:
    """Deterministic: the same trigger event always yields the same id."""
    digest = hashlib.sha256(f"{kind}|{user}|{subject}|{trigger_id}".encode()).hexdigest()
    return f"m-{digest[:24]}"


def opted_out(profile: Profile, opt_out_traits: tuple[str, ...] = OPT_OUT_TRAITS) -> bool:
    """The person has one of ``opt_out_traits`` set: no moments for them."""
    return any(trait(profile, name) for name in opt_out_traits)


def offer_id(moment_id: str) -> str:
    """The id of the offer a moment leads to: consumers' idempotency key."""
    return "o-" + moment_id.removeprefix("m-")


def moment_of(offer_id: str) -> str:
    """The id of the moment an offer (or a held-out moment's would-be offer) came from."""
    return "m-" + offer_id.removeprefix("o-")


def update_visit(profile: Profile, event: dict[str, Any], reference: Reference) -> None:
    """Track which store the user is in from a location ping."""
    ts = event["ts"]
    store_id, _entered, last, _trigger, _fired = profile["visit"]
    if ts < last:
        return  # an older ping than the one already seen
    store = reference.store_at(event["props"]["lat"], event["props"]["lon"])
    if store is None:
        profile["visit"] = [None, 0, ts, "", False]
    elif store.id == store_id and ts - last < SAME_VISIT_MS:
        profile["visit"][2] = ts
        profile["last_store"] = [store.id, profile["visit"][1], ts]
    else:
        profile["visit"] = [store.id, ts, ts, event["id"], False]
        profile["last_store"] = [store.id, ts, ts]
    profile["updated"] = max(profile["updated"], ts)


def store_entry(
    profile: Profile,
    *,
    recent_interest_ms: int,
    cooldown_ms: int,
    opt_out_traits: tuple[str, ...] = OPT_OUT_TRAITS,
) -> dict[str, Any] | None:
    """The store-entry moment, if the current visit now meets the rule."""
    store_id, entered, last, trigger, fired = profile["visit"]
    if store_id is None or fired or profile["updated"] - last > SAME_VISIT_MS:
        return None
    if opted_out(profile, opt_out_traits):
        return None
    interested = recent_views(profile, last, recent_interest_ms)
    if not interested and not trait(profile, "favorite_category"):
        return None
    previous = profile["moments"].get(STORE_ENTRY)
    if previous is not None and entered - previous < cooldown_ms:
        return None
    profile["visit"][4] = True
    profile["moments"][STORE_ENTRY] = entered
    return {
        "id": moment_id(STORE_ENTRY, profile["user"], store_id, trigger),
        "type": STORE_ENTRY,
        "user": profile["user"],
        "store_id": store_id,
        "event_ts": entered,
        "trigger_id": trigger,
    }


def cart_changed_at(profile: Profile) -> int | None:
    """When the cart last changed, if it holds anything."""
    cart = profile["cart"]
    return max(ts for _quantity, ts in cart.values()) if cart else None


def cart_abandoned(
    profile: Profile,
    now: int,
    *,
    idle_ms: int,
    cooldown_ms: int,
    opt_out_traits: tuple[str, ...] = OPT_OUT_TRAITS,
) -> dict[str, Any] | None:
    """The cart-abandonment moment, if the cart has sat unchanged for ``idle_ms`` by ``now``.

    An order empties the cart (the items added before it), so a cart still
    holding products after the idle time was left. Fires once per cart state:
    the moment's time is when the idle time ran out, and the next one must be
    ``cooldown_ms`` later.
    """
    changed = cart_changed_at(profile)
    if changed is None or now < changed + idle_ms:
        return None
    if opted_out(profile, opt_out_traits):
        return None
    due = changed + idle_ms
    if not _due_again(profile, CART_ABANDONED, due, cooldown_ms):
        return None
    products = sorted(profile["cart"])
    trigger = f"cart@{changed}"
    return {
        "id": moment_id(CART_ABANDONED, profile["user"], ",".join(products), trigger),
        "type": CART_ABANDONED,
        "user": profile["user"],
        "store_id": None,
        "event_ts": due,
        "trigger_id": trigger,
        "cart": products,
    }


def last_store_visit(profile: Profile) -> int | None:
    """When the latest store visit began, if there was one."""
    held = profile.get("last_store")
    return held[1] if held else None


def win_back(
    profile: Profile,
    now: int,
    *,
    lapsed_ms: int,
    cooldown_ms: int,
    opt_out_traits: tuple[str, ...] = OPT_OUT_TRAITS,
) -> dict[str, Any] | None:
    """The win-back moment, if the latest store visit ended ``lapsed_ms`` before ``now``."""
    held = profile.get("last_store")
    if not held or now < held[2] + lapsed_ms:
        return None  # never visited, or came back since: that visit has its own timer
    if opted_out(profile, opt_out_traits):
        return None
    store_id, entered, last = held
    due = last + lapsed_ms
    if not _due_again(profile, WIN_BACK, due, cooldown_ms):
        return None
    trigger = f"visit@{entered}"
    return {
        "id": moment_id(WIN_BACK, profile["user"], store_id, trigger),
        "type": WIN_BACK,
        "user": profile["user"],
        "store_id": store_id,
        "event_ts": due,
        "trigger_id": trigger,
    }


def _due_again(profile: Profile, kind: str, due: int, cooldown_ms: int) -> bool:
    """Record a timed moment of ``kind`` at ``due``, unless it fired there or too recently."""
    previous = profile["moments"].get(kind)
    if previous is not None and (previous >= due or due - previous < cooldown_ms):
        return False
    profile["moments"][kind] = due
    return True
