"""What every moment type shares: ids, consent, the store visit, the cart's
age, and a timed moment's once-only record.

The moment types themselves (their rules, context, prompt and template)
are agents/moment_types/, one module each. Holdout, quiet hours and caps:
agents/rules.py.
"""

from __future__ import annotations

import hashlib

from agents.profile import Profile, trait
from streams.domain import Event
from streams.reference import Reference

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


def update_visit(profile: Profile, event: Event, reference: Reference) -> None:
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


def cart_changed_at(profile: Profile) -> int | None:
    """When the cart last changed, if it holds anything."""
    cart = profile["cart"]
    return max(ts for _quantity, ts in cart.values()) if cart else None


def last_store_visit(profile: Profile) -> int | None:
    """When the latest store visit began, if there was one."""
    held = profile.get("last_store")
    return held[1] if held else None


def due_again(profile: Profile, kind: str, due: int, cooldown_ms: int) -> bool:
    """Record a timed moment of ``kind`` at ``due``, unless it fired there or too recently."""
    previous = profile["moments"].get(kind)
    if previous is not None and (previous >= due or due - previous < cooldown_ms):
        return False
    profile["moments"][kind] = due
    return True
