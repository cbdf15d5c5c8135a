"""A synthetic population of shoppers: browsing, carts, CRM records and store visits.

Seeded, so the same seed plans the same traffic. A plan is a time-ordered
list of (offset in seconds, source, event); the event time is stamped when
an event is sent. Most shoppers browse, then walk into a store that carries
what they looked at (a moment); some pass by without having shown interest
(no moment). Half of them browse anonymously and log in just before the
visit, so their views reach their profile through an identity merge. The
CRM sends orders, loyalty changes and the odd support ticket; background
page views fill the rest, with a few malformed records among them, as real
producers send.
"""

from __future__ import annotations

import random
from typing import Any

from streams.reference import Reference
from streams.tools.traffic import Planned, Population

FIRST_NAMES = (
    "Alice",
    "Bruno",
    "Chiara",
    "Dev",
    "Elif",
    "Farah",
    "Goran",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tomas",
)
TIERS = ("gold", "silver", "bronze", None)
# Roughly 1.1 m per 1e-5 degrees of latitude.
DEGREES_PER_METRE = 1e-5 / 1.1


def plan(reference: Reference, population: Population) -> list[Planned]:
    """Plan ``population.duration`` seconds of traffic for its shoppers."""
    rng = random.Random(population.seed)
    stores = list(reference.stores.values())
    planned: list[Planned] = []
    for index in range(population.users):
        user = f"u-{population.seed}-{index:04d}"
        store = stores[index % len(stores)]
        interested = rng.random() < 0.8
        planned.extend(_shopper(rng, reference, user, store, interested, population.duration))
    planned.extend(_background(rng, reference, population))
    planned.sort(key=lambda p: p.at)
    return planned


def _shopper(
    rng: random.Random,
    reference: Reference,
    user: str,
    store: Any,
    interested: bool,
    duration: float,
) -> list[Planned]:
    # Browsing takes `lead` seconds before the visit (20 s, less in a short run).
    lead = min(20.0, 0.3 * duration)
    visit = lead + rng.uniform(0.1, 0.7) * (duration - lead)
    step_s = lead / 7
    traits: dict[str, Any] = {"name": rng.choice(FIRST_NAMES), "email": f"{user}@example.com"}
    anon = "anon-" + user.removeprefix("u-")
    late_login = rng.random() < 0.5
    ids = {"anonymousId": anon} if late_login else {"userId": user, "anonymousId": anon}
    login_at = visit - 1.5 * step_s if late_login else visit - lead
    events = [Planned(login_at, "clickstream", _identify(user, anon, traits))]
    events.extend(_crm(rng, reference, user, visit - lead))
    if interested:
        liked = [p for p in reference.products.values() if p.category in store.categories]
        for step in range(rng.randint(2, 4)):
            product = rng.choice(liked)
            props = {"product_id": product.id, "category": product.category, "price": product.price}
            events.append(
                Planned(
                    visit - lead + step_s * (1 + step) * 0.8,
                    "clickstream",
                    _track(ids, "Product Viewed", props),
                )
            )
        if rng.random() < 0.4:
            props = {"product_id": product.id, "quantity": 1}
            events.append(
                Planned(visit - 2 * step_s, "clickstream", _track(ids, "Product Added", props))
            )
    events.append(Planned(visit - step_s, "location", _ping(rng, user, store, outside=True)))
    events.append(Planned(visit, "location", _ping(rng, user, store, outside=False)))
    events.append(Planned(visit + 5, "location", _ping(rng, user, store, outside=False)))
    return [p for p in events if p.at < duration]


def _crm(rng: random.Random, reference: Reference, user: str, at: float) -> list[Planned]:
    """What the CRM knows: an earlier order, a loyalty tier, now and then a ticket."""
    out = []
    tier = rng.choice(TIERS)
    if tier:
        loyalty = {"type": "loyalty", "userId": user, "tier": tier, "points": rng.randrange(5000)}
        out.append(Planned(at, "crm", loyalty))
    if rng.random() < 0.3:
        product = rng.choice(list(reference.products.values()))
        order = {
            "type": "order",
            "userId": user,
            "order_id": f"o-{user}-{rng.randrange(10**6)}",
            "total": product.price,
            "items": [{"product_id": product.id, "quantity": 1}],
        }
        out.append(Planned(at, "crm", order))
    if rng.random() < 0.05:
        ticket = {
            "type": "ticket",
            "userId": user,
            "ticket_id": f"T-{rng.randrange(10**5)}",
            "status": "open",
            "subject": "Where is my order?",
        }
        out.append(Planned(at, "crm", ticket))
    return out


def _background(rng: random.Random, reference: Reference, crowd: Population) -> list[Planned]:
    products = list(reference.products.values())
    planned = []
    for _ in range(int(crowd.duration * crowd.rate)):
        at = rng.uniform(0, crowd.duration)
        user = f"u-{crowd.seed}-{rng.randrange(max(crowd.users, 1)):04d}"
        if rng.random() < 0.01:
            planned.append(Planned(at, "clickstream", _malformed(rng, user)))
            continue
        product = rng.choice(products)
        event = {
            "type": "page",
            "userId": user,
            "name": f"/products/{product.id}",
            "properties": {},
        }
        planned.append(Planned(at, "clickstream", event))
    return planned


def _identify(user: str, anon: str, traits: dict[str, Any]) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "anonymousId": anon, "traits": traits}


def _track(ids: dict[str, str], name: str, props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "track", "event": name, **ids, "properties": props}


def _ping(rng: random.Random, user: str, store: Any, *, outside: bool) -> dict[str, Any]:
    metres = rng.uniform(400, 900) if outside else rng.uniform(0, store.radius_m / 3)
    bearing = rng.uniform(-1, 1)
    return {
        "type": "location",
        "userId": user,
        "lat": store.lat + metres * DEGREES_PER_METRE * bearing,
        "lon": store.lon + metres * DEGREES_PER_METRE * (1 - abs(bearing)),
        "accuracy_m": round(rng.uniform(5, 25), 1),
        "device": rng.choice(("ios", "android")),
    }


def _malformed(rng: random.Random, user: str) -> bytes | dict[str, Any]:
    kind = rng.randrange(3)
    if kind == 0:
        return b'{"type": "track", "userId": "' + user.encode() + b'", "event": '
    if kind == 1:
        return {"type": "track", "userId": user, "properties": {}}
    return {"type": "page", "name": "/home"}
