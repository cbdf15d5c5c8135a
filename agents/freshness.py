"""Freshness per feature family: how old, in event time, is what a profile
shows, and how long an event takes to be readable through the Profile API.

Each applied event moves the families its kind feeds. The profile keeps,
per family, the event time of the latest event applied to it
(``profile["asof"]``, shown by ``GET /v1/profiles/{id}/features``); the
context stage measures each family's lag from the event's own timestamp to
the table write that holds it (``kairos_feature_freshness_seconds``), which
is when the Profile API can read it.

The taste vector (agents/taste.py) is fed by views, carts and orders of
products that have a vector, so it is marked by what the event did, not by
its kind alone.
"""

from __future__ import annotations

from typing import Any

from agents.profile import Profile
from streams.domain import Event
from streams.metrics import observe_all

FAMILIES = ("traits", "session", "windows", "location", "taste")
_BEHAVIOUR = ("session", "windows")
# Event kinds and the families they feed (agents/features.py: the tiles and
# the session take every behavioural event; agents/profile.py: the traits).
FEEDS: dict[str, tuple[str, ...]] = {
    "identify": ("traits",),
    "traits": ("traits",),
    "loyalty": ("traits",),
    "group": ("traits",),
    "track": _BEHAVIOUR,
    "page": _BEHAVIOUR,
    "screen": _BEHAVIOUR,
    "location": (*_BEHAVIOUR, "location"),
}


def mark(profile: Profile, event: Event, taste: bool = False) -> list[tuple[str, int]]:
    """Record in ``profile`` that ``event`` is applied: its families'
    (family, event time), to be measured once written; ``taste`` if it moved
    the taste vector. An absorbed profile brings its as-of times, measured
    when its events were applied."""
    held: dict[str, int] = profile.setdefault("asof", {})
    if event["kind"] == "absorb":
        for family, ts in (event["profile"].get("asof") or {}).items():
            held[family] = max(held.get(family, ts), ts)
        return []
    ts = event["ts"]
    fed = FEEDS.get(event["kind"], ())
    if taste:
        fed = (*fed, "taste")
    for family in fed:
        if family not in held or ts > held[family]:  # the later time, as max() keeps it
            held[family] = ts
    return [(family, ts) for family in fed]


def as_of(profile: Profile) -> dict[str, Any]:
    """Per family, the event time of the latest event applied to it, or None."""
    held = profile.get("asof") or {}
    return {family: held.get(family) for family in FAMILIES}


def observe(histogram: Any, fresh: list[tuple[str, int]], written_at: int) -> None:
    """Each (family, event time)'s lag to ``written_at``, in seconds; a clock
    ahead of ours counts as no lag. Observed a family at a time: a bundle's
    observations are one call per family, not two per event."""
    lags: dict[str, list[float]] = {}
    for family, ts in fresh:
        lags.setdefault(family, []).append(max(0, written_at - ts) / 1000)
    for family, seconds in lags.items():
        observe_all(histogram.labels(family), seconds)
