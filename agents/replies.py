"""Replies in a person's state, and how they steer the next offer's context.

A ``replied`` feedback event (streams/events.py) is remembered in the
profile as it is folded in (agents/fold.py): its text sanitised
(models/replies.py), or dropped with the reason, and the preferences and
exclusions derived from it against the catalog in force then, as catalog
ids. The last :data:`MAX_REPLIES`, by event time::

    "replies": [[ts, text or null, dropped reason or null, offer_id,
                 [[action, kind, id], ...]], ...]        # oldest first

The newest word on a category or product wins ("no shoes", later "I want
shoes" again). Context selection reads the outcome, :func:`preferences`:
excluded products, and products of excluded categories, are never offered;
preferred categories and products rank first, and a product a reply asked
for joins the candidates where the store carries it (:func:`steer`, called
by agents/moment_types/facts.py ``rank_products``); the newest preferred
category is the context's favorite category. ``context_used`` says so,
``reply:exclude:<category or product id>`` and ``reply:prefer:<...>``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agents.profile import code
from models.replies import (
    CATEGORY,
    EXCLUDE,
    MAX_TERMS,
    MAX_TEXT,
    PRODUCT,
    cleaned,
    extract,
    sanitised,
)  # fmt: skip
from streams.domain import Event, Profile
from streams.reference import Product, Reference, Store

MAX_REPLIES = 5
REPLIED = "replied"
KEPT, CUT = "kept", "cut"
KINDS = (CATEGORY, PRODUCT)


def is_reply(event: Event) -> bool:
    return event["kind"] == "feedback" and event.get("name") == REPLIED


def remember_reply(profile: Profile, event: Event, reference: Reference) -> str:
    """Keep the reply in ``profile``; what became of its text: kept, cut, or why dropped."""
    props = event.get("props") or {}
    raw = props.get("text")
    raw = raw if isinstance(raw, str) else ""
    text, dropped = sanitised(raw)
    terms = [[t.action, t.kind, t.id] for t in extract(text, reference)] if text else []
    entry = [event["ts"], text, dropped, code(props.get("offer_id")), terms]
    replies = profile.setdefault("replies", [])
    bisect.insort(replies, entry, key=lambda held: held[0])
    del replies[:-MAX_REPLIES]
    if dropped:
        return dropped
    return CUT if len(cleaned(raw)) > MAX_TEXT else KEPT


def merge_replies(target: Profile, source: Profile) -> None:
    """Both people's replies, the newest :data:`MAX_REPLIES` (the same reply once)."""
    theirs = source.get("replies") or []
    if theirs:
        both = {repr(held): held for held in (target.get("replies") or []) + theirs}
        merged = sorted(both.values(), key=lambda held: (held[0], repr(held)))
        target["replies"] = merged[-MAX_REPLIES:]


@dataclass(frozen=True)
class Preferences:
    """What the replies, newest word last, say about categories and products."""

    excluded: dict[str, frozenset[str]]  # kind -> ids
    preferred: dict[str, tuple[str, ...]]  # kind -> ids, newest first

    def allows(self, product: Product) -> bool:
        return (product.id not in self.excluded[PRODUCT]
                and product.category not in self.excluded[CATEGORY])  # fmt: skip

    def ranks(self, product: Product) -> bool:
        return (product.id in self.preferred[PRODUCT]
                or product.category in self.preferred[CATEGORY])  # fmt: skip

    @property
    def favorite(self) -> str | None:
        return next(iter(self.preferred[CATEGORY]), None)

    def used(self) -> list[str]:
        """The ``context_used`` entries these preferences add."""
        out = [f"reply:{EXCLUDE}:{key}" for kind in KINDS for key in sorted(self.excluded[kind])]
        return out + [f"reply:prefer:{key}" for kind in KINDS for key in self.preferred[kind]]


def preferences(profile: Profile) -> Preferences:
    said: dict[tuple[str, str], tuple[int, str]] = {}  # (kind, id) -> (when, action)
    for ts, _text, _dropped, _offer, terms in profile.get("replies") or []:
        for action, kind, key in terms[:MAX_TERMS]:
            said[kind, key] = (ts, action)
    newest = sorted(said.items(), key=lambda item: item[1][0], reverse=True)
    return Preferences(
        {kind: frozenset(k for (c, k), (_, a) in said.items() if c == kind and a == EXCLUDE)
         for kind in KINDS},
        {kind: tuple(k for (c, k), (_, a) in newest if c == kind and a != EXCLUDE)
         for kind in KINDS},
    )  # fmt: skip


def steer(
    profile: Profile, ranked: Iterable[Product], store: Store | None, reference: Reference
) -> list[Product]:
    """``ranked`` without what the replies exclude, with the products they asked
    for that ``store`` carries added, and what they prefer first (a stable sort:
    otherwise in the order given)."""
    prefs = preferences(profile)
    candidates = list(ranked)
    if store is not None:
        asked = (reference.products.get(key) for key in prefs.preferred[PRODUCT])
        candidates += [p for p in asked if p is not None and p.category in store.categories]
    unique = {p.id: p for p in candidates if prefs.allows(p)}
    return sorted(unique.values(), key=lambda p: not prefs.ranks(p))


def allowed(profile: Profile, products: Iterable[Product]) -> list[Product]:
    """``products`` without what the replies exclude (an abandoned cart's, say)."""
    prefs = preferences(profile)
    return [p for p in products if prefs.allows(p)]


def favorite(profile: Profile, trait_favorite: str | None) -> str | None:
    """The newest category a reply preferred, else the trait, unless a reply excluded it."""
    prefs = preferences(profile)
    chosen = prefs.favorite or trait_favorite
    return None if chosen in prefs.excluded[CATEGORY] else chosen


def asked(profile: Profile) -> frozenset[str]:
    """The products the replies asked for by name."""
    if not profile.get("replies"):
        return frozenset()
    return frozenset(preferences(profile).preferred[PRODUCT])


def used(profile: Profile) -> list[str]:
    return preferences(profile).used() if profile.get("replies") else []


def replies_view(profile: Profile) -> dict[str, Any]:
    """The Profile API's view: the replies newest first, and what they add up to."""
    prefs = preferences(profile)
    return {
        "replies": [
            {"at": ts, "text": text, "dropped": dropped, "offer_id": offer,
             "derived": [{"action": a, "kind": k, "id": i} for a, k, i in terms]}
            for ts, text, dropped, offer, terms in reversed(profile.get("replies") or [])
        ],
        "preferences": {
            "excluded": {kind: sorted(prefs.excluded[kind]) for kind in KINDS},
            "preferred": {kind: list(prefs.preferred[kind]) for kind in KINDS},
        },
        "limit": MAX_REPLIES,
    }  # fmt: skip
