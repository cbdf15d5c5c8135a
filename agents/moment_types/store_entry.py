"""In-store entry: a known shopper walks into a store.

A location ping puts the person inside a store's geofence (coming from
elsewhere), and they showed interest (a product view within
``recent_interest_minutes`` before the visit) or have a known favorite
category; not opted out; not within the cooldown since the last one.

Judged in event time after every event, not only on the ping: clickstream
and location arrive on different topics, so a view can be processed after
the ping that follows it. The visit is remembered (agents/moments.py), and a
view that arrives late still fires the visit's moment while the visit lasts.
The moment's id comes from the entry ping, so it is the same whichever
event completed the rule.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import Field

from agents.moment_types.base import Moment, MomentType, RuleConfig
from agents.moment_types.facts import name_and_tier, rank_products
from agents.moments import OPT_OUT_TRAITS, SAME_VISIT_MS, moment_id, opted_out
from agents.profile import Profile, recent_views, trait
from agents.replies import asked as reply_asked
from agents.replies import favorite as reply_favorite
from agents.replies import used as reply_used
from models.context import ContextSlice, trait_text
from models.guardrails import Draft
from models.prompts import RULES, Prompt, worked_prompt
from streams.reference import Reference
from streams.vectors import ProductVectors

NAME = "store_entry"


class StoreEntry(RuleConfig):
    recent_interest_minutes: float = Field(default=1440, gt=0)
    cooldown_minutes: float = Field(default=360, ge=0)

    @property
    def recent_interest_ms(self) -> int:
        return int(self.recent_interest_minutes * 60_000)

    @property
    def cooldown_ms(self) -> int:
        return int(self.cooldown_minutes * 60_000)


def store_entry(
    profile: Profile, *, recent_interest_ms: int, cooldown_ms: int,
    opt_out_traits: tuple[str, ...] = OPT_OUT_TRAITS,
) -> Moment | None:  # fmt: skip
    """The store-entry moment, if the current visit now meets the rule."""
    store_id, entered, last, trigger, fired = profile["visit"]
    if store_id is None or fired or profile["updated"] - last > SAME_VISIT_MS:
        return None
    if opted_out(profile, opt_out_traits):
        return None
    interested = recent_views(profile, last, recent_interest_ms)
    if not interested and not trait(profile, "favorite_category"):
        return None
    previous = profile["moments"].get(NAME)
    if previous is not None and entered - previous < cooldown_ms:
        return None
    profile["visit"][4] = True
    profile["moments"][NAME] = entered
    return {
        "id": moment_id(NAME, profile["user"], store_id, trigger),
        "type": NAME,
        "user": profile["user"],
        "store_id": store_id,
        "event_ts": entered,
        "trigger_id": trigger,
    }


def detect(profile: Profile, config: StoreEntry, opt_out_traits: tuple[str, ...]) -> Moment | None:
    return store_entry(profile, recent_interest_ms=config.recent_interest_ms,
                       cooldown_ms=config.cooldown_ms, opt_out_traits=opt_out_traits)  # fmt: skip


def store_context(
    profile: Profile, moment: Moment, reference: Reference, window_ms: int,
    vectors: ProductVectors | None = None,
) -> ContextSlice:  # fmt: skip
    """The name, the tier, and the products viewed within ``window_ms`` or like the
    person's taste, ranked for the store (agents/moment_types/facts.py); the
    favorite category if none. ``used`` says why each product is there:
    ``view:`` it was viewed, ``similar:`` it is like what they view and buy."""
    assert moment["store_id"] is not None  # a store entry is about a store
    store = reference.stores[moment["store_id"]]
    first_name, tier, used = name_and_tier(profile)
    favorite = reply_favorite(profile, trait_text(trait(profile, "favorite_category")))
    event_ts = moment["event_ts"]
    products = rank_products(profile, event_ts, window_ms, store, reference, vectors)
    viewed = {view[1] for view in recent_views(profile, event_ts, window_ms)}
    suggested = frozenset(p.id for p in products if p.id not in viewed)
    asked = reply_asked(profile)  # named by reply_used below, as reply:prefer:<id>
    used.extend(f"view:{p.id}" if p.id in viewed else f"similar:{p.id}"
                for p in products if p.id in viewed or p.id not in asked)  # fmt: skip
    if favorite and not products:
        used.append("trait:favorite_category")
    used.extend(reply_used(profile))
    return ContextSlice(store, first_name, tier, favorite, tuple(products), tuple(used),
                        suggested=suggested)  # fmt: skip


def context(
    profile: Profile, moment: Moment, reference: Reference, config: StoreEntry,
    vectors: ProductVectors | None = None,
) -> ContextSlice:  # fmt: skip
    return store_context(profile, moment, reference, config.recent_interest_ms, vectors)


SYSTEM = (
    "You write one short, friendly in-store message for a retail app. "
    "Use only the facts in the customer data and call the customer by their first_name. " + RULES
)
# Two worked examples: small models follow examples far better than rules,
# and two different customers show which parts change. They also show the
# compact JSON wanted, in the schema's field order, and one short sentence
# each (longer answers looped and ran out of tokens).
EXAMPLES = (
    (
        {"store": "SoHo", "recently_viewed": ["Canvas tote"], "first_name": "Sam"},
        "SoHo",
        "Canvas tote",
        {
            "product_id": "p-402",
            "headline": "Sam, your tote is here",
            "message": "Welcome to SoHo, Sam, the Canvas tote you liked is in store today.",
        },
    ),
    (
        {
            "store": "Flatiron",
            "recently_viewed": ["Daypack 22L"],
            "first_name": "Lena",
            "loyalty_tier": "silver",
        },
        "Flatiron",
        "Daypack 22L",
        {
            "product_id": "p-203",
            "headline": "Lena, come see the Daypack 22L",
            "message": "Hi Lena, welcome to Flatiron, come and try the Daypack 22L you looked at.",
        },
    ),
)


def prompt(context: ContextSlice) -> Prompt:
    assert context.store is not None
    return worked_prompt("store_entry.v2", SYSTEM, EXAMPLES, _task, context, context.store.name)


def _task(facts: dict[str, Any], store: str, product: str | None) -> str:
    focus = (
        f"Invite them to see the {product} in store." if product else "Invite them to look around."
    )
    return (
        f"Customer data: {orjson.dumps(facts).decode()}\n"
        f"The customer just walked into our {store} store. {focus}"
    )


def template(context: ContextSlice, discount_pct: int) -> Draft:
    assert context.store is not None
    greeting = f"Welcome in, {context.first_name}!" if context.first_name else "Welcome in!"
    product = context.products[0] if context.products else None
    looked = "" if product is None or product.id in context.suggested else " you looked at"
    focus = f" The {product.name}{looked} is here to try." if product else ""
    return Draft(
        headline=f"{discount_pct}% off at {context.store.name} today",
        message=f"{greeting}{focus}",
        product_id=product.id if product else None,
    )


# A welcome is for the visit, and a visit is over this long after its last ping.
MAX_AGE_MS = SAME_VISIT_MS
TYPE = MomentType(
    NAME, StoreEntry, context, prompt, template, max_age_ms=MAX_AGE_MS, detect=detect,
    redeem="Show this offer at the till", channels=("push", "sms"),  # seen at once, in the store
)  # fmt: skip
