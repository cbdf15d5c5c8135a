"""Moment rules: when a user's state says "now is the time to reach out".

In-store entry: a location ping puts the user inside a store's geofence
(coming from elsewhere), and the user showed interest recently (a product
view within ``recent_interest_s``) or has a known favorite category; not
opted out; not within the cooldown since the last in-store moment.
"""

from __future__ import annotations

import hashlib
from typing import Any

from agents.profile import Profile, recent_views, trait
from streams.reference import Reference

STORE_ENTRY = "store_entry"
# A ping in the same store within this gap is the same visit, not an entry.
SAME_VISIT_MS = 30 * 60 * 1000
OPT_OUT_TRAITS = ("marketing_opt_out", "unsubscribed")


def moment_id(kind: str, user: str, subject: str, trigger_id: str) -> str:
    """Deterministic: the same trigger event always yields the same id."""
    digest = hashlib.sha256(f"{kind}|{user}|{subject}|{trigger_id}".encode()).hexdigest()
    return f"m-{digest[:24]}"


def on_location(
    profile: Profile,
    event: dict[str, Any],
    reference: Reference,
    *,
    recent_interest_ms: int,
    cooldown_ms: int,
) -> dict[str, Any] | None:
    """Update where the user is; return a store-entry moment if one fires."""
    ts = event["ts"]
    previous_store, previous_ts = profile["place"]
    if ts < previous_ts:
        return None  # an older ping than the one already seen
    store = reference.store_at(event["props"]["lat"], event["props"]["lon"])
    profile["place"] = [store.id if store else None, ts]
    profile["updated"] = max(profile["updated"], ts)
    if store is None:
        return None
    if previous_store == store.id and ts - previous_ts < SAME_VISIT_MS:
        return None
    if any(trait(profile, name) for name in OPT_OUT_TRAITS):
        return None
    recent = recent_views(profile, ts, recent_interest_ms)
    if not recent and not trait(profile, "favorite_category"):
        return None
    last = profile["moments"].get(STORE_ENTRY)
    if last is not None and ts - last < cooldown_ms:
        return None
    profile["moments"][STORE_ENTRY] = ts
    return {
        "id": moment_id(STORE_ENTRY, event["user"], store.id, event["id"]),
        "type": STORE_ENTRY,
        "user": event["user"],
        "store_id": store.id,
        "event_ts": ts,
        "trigger_id": event["id"],
    }
