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

Each shopper has a hidden taste (:func:`hidden_taste`): two favourite
categories and the share of their shopping each gets. It picks what they
view, with each product's popularity (:func:`popularity`), and
:func:`histories` plans weeks of a shopper's views, carts and orders from
it, for bench/recommend.py to predict.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from streams.reference import Product, Reference
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
# The shares of a shopper's interest their two favourite categories get; the
# rest is spread over the others.
FAVOURITE_SHARES = (0.6, 0.25)
# Popularity falls with rank as 1 / rank**POPULARITY_SKEW (Zipf-like, as
# catalogue sales do).
POPULARITY_SKEW = 0.8
# A history (:func:`histories`): sessions of a few views, days apart; most
# keep to one category drawn from the taste, the others wander by it. After
# a view, sometimes the product goes in the cart, more rarely it is bought.
SESSION_VIEWS = (2, 6)
SESSION_GAP_DAYS = 3.0  # on average, exponentially distributed
FOCUSED = 0.7
CART_SHARE = 0.12
BUY_SHARE = 0.05
DAY_MS = 86_400_000


def plan(reference: Reference, population: Population) -> list[Planned]:
    """Plan ``population.duration`` seconds of traffic for its shoppers."""
    rng = random.Random(population.seed)
    stores = list(reference.stores.values())
    popular = popularity(reference, population.seed)
    planned: list[Planned] = []
    for index in range(population.users):
        user = f"u-{population.seed}-{index:04d}"
        store = stores[index % len(stores)]
        interested = rng.random() < 0.8
        shopper = Shopper(user, hidden_taste(reference, population.seed, user), popular)
        planned.extend(_shopper(rng, reference, shopper, store, interested, population.duration))
    planned.extend(_background(rng, reference, population))
    planned.sort(key=lambda p: p.at)
    return planned


@dataclass(frozen=True)
class Shopper:
    """A synthetic shopper: their id, hidden taste (category: share) and the
    catalog's popularity (product id: weight)."""

    user: str
    taste: dict[str, float]
    popular: dict[str, float]


def hidden_taste(reference: Reference, seed: int, user: str) -> dict[str, float]:
    """A shopper's share of interest per category: FAVOURITE_SHARES for two
    favourites, the rest even. Its own Random: the same shopper, the same taste."""
    rng = random.Random(f"taste:{seed}:{user}")
    categories = sorted({p.category for p in reference.products.values()})
    favourites = rng.sample(categories, min(len(FAVOURITE_SHARES), len(categories)))
    others = [c for c in categories if c not in favourites]
    rest = 1 - sum(FAVOURITE_SHARES[: len(favourites)])
    taste = {c: rest / len(others) for c in others}
    taste.update(zip(favourites, FAVOURITE_SHARES, strict=False))
    return taste


def popularity(reference: Reference, seed: int) -> dict[str, float]:
    """Each product's popularity: a seeded order of the catalog, Zipf-like."""
    ranked = sorted(reference.products)
    random.Random(f"popularity:{seed}").shuffle(ranked)
    return {pid: 1 / (rank + 1) ** POPULARITY_SKEW for rank, pid in enumerate(ranked)}


def histories(
    reference: Reference, users: int, sessions: int, seed: int, start_ms: int
) -> dict[str, list[dict[str, Any]]]:
    """Per shopper, ``sessions`` sessions of Segment track calls from
    ``start_ms`` on, in time order: what their hidden taste had them view,
    cart and buy."""
    rng = random.Random(f"histories:{seed}")
    popular = popularity(reference, seed)
    products = list(reference.products.values())
    out = {}
    for index in range(users):
        user = f"h-{seed}-{index:04d}"
        shopper = Shopper(user, hidden_taste(reference, seed, user), popular)
        ts, events = start_ms + int(rng.uniform(0, 2) * DAY_MS), []
        for _ in range(sessions):
            ts += int(rng.expovariate(1 / SESSION_GAP_DAYS) * DAY_MS)
            events += _session(rng, shopper, products, ts)
        out[user] = events
    return out


def _session(
    rng: random.Random, shopper: Shopper, products: list[Product], ts: int
) -> list[dict[str, Any]]:
    category = rng.choices(list(shopper.taste), list(shopper.taste.values()))[0]
    focused = [p for p in products if p.category == category] if rng.random() < FOCUSED else []
    pool = focused or products
    weights = _weights(pool, shopper.taste, shopper.popular)
    ids = {"userId": shopper.user}
    events = []
    for step in range(rng.randint(*SESSION_VIEWS)):
        product = rng.choices(pool, weights)[0]
        at = ts + step * 120_000
        props = {"product_id": product.id, "category": product.category, "price": product.price}
        events.append(_track(ids, "Product Viewed", props) | {"timestamp": at})
        if rng.random() < CART_SHARE:
            added = {"product_id": product.id, "quantity": 1}
            events.append(_track(ids, "Product Added", added) | {"timestamp": at + 30_000})
        if rng.random() < BUY_SHARE:
            order = {"order_id": f"o-{shopper.user}-{at}", "total": product.price,
                     "products": [{"product_id": product.id, "quantity": 1}]}  # fmt: skip
            events.append(_track(ids, "Order Completed", order) | {"timestamp": at + 60_000})
    return [{**event, "messageId": f"{shopper.user}-{n}-{ts}"} for n, event in enumerate(events)]


def _weights(
    products: list[Product], taste: dict[str, float], popular: dict[str, float]
) -> list[float]:
    return [taste.get(p.category, 0.0) * popular[p.id] for p in products]


def _shopper(
    rng: random.Random,
    reference: Reference,
    shopper: Shopper,
    store: Any,
    interested: bool,
    duration: float,
) -> list[Planned]:
    user = shopper.user
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
        weights = _weights(liked, shopper.taste, shopper.popular)
        for step in range(rng.randint(2, 4)):
            product = rng.choices(liked, weights)[0]
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
