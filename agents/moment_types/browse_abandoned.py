"""Browse abandonment: a person views the same product ``views`` times (3)
in one session without adding it to the cart, and the session ends.

The wait starts at the latest view of such a product and lasts
``idle_minutes`` (the session gap, 30, by default): a view, an add or an
order in between moves or ends it. When it runs out, the session must be
over and the product still not in the cart. One moment per session at most,
and ``cooldown_minutes`` between two.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from pydantic import Field

from agents.moment_types.base import Moment, MomentType, RuleConfig, Timer
from agents.moment_types.facts import name_and_tier
from agents.moments import due_again, moment_id, opted_out
from agents.profile import Profile
from agents.replies import allowed
from agents.replies import used as reply_used
from models.context import ContextSlice
from models.guardrails import Draft
from models.prompts import RULES, Prompt, worked_prompt
from streams.reference import Reference

NAME = "browse_abandoned"
VIEWS = 3


class BrowseAbandoned(RuleConfig):
    # Off unless the rules file turns it on: it is the newest type, and a
    # deployment chooses when its shoppers start getting it.
    enabled: bool = False
    views: int = Field(default=VIEWS, ge=2)
    idle_minutes: float = Field(default=30, gt=0)
    cooldown_minutes: float = Field(default=1440, ge=0)

    @property
    def idle_ms(self) -> int:
        return int(self.idle_minutes * 60_000)

    @property
    def cooldown_ms(self) -> int:
        return int(self.cooldown_minutes * 60_000)


def browsed(profile: Profile, views: int = VIEWS) -> tuple[str, int, int] | None:
    """(product, its views, its latest view's time) of the product viewed most,
    at least ``views`` times, in the current session and not in the cart."""
    session = profile.get("session")
    if not session:
        return None
    counts: Counter[str] = Counter()
    latest: dict[str, int] = {}
    for ts, product, _category in profile["views"]:
        if ts >= session[0] and product not in profile["cart"]:
            counts[product] += 1
            latest[product] = max(ts, latest.get(product, ts))
    ranked = sorted(counts, key=lambda p: (counts[p], latest[p]), reverse=True)
    if not ranked or counts[ranked[0]] < views:
        return None
    return ranked[0], counts[ranked[0]], latest[ranked[0]]


def last_view(profile: Profile) -> int | None:
    """When the wait began: the latest view of a product browsed enough."""
    found = browsed(profile)
    return found[2] if found else None


def browse_abandoned(
    profile: Profile, now: int, config: BrowseAbandoned, opt_out_traits: tuple[str, ...]
) -> tuple[Moment | None, int | None]:
    """The moment, if the session with enough views of one product is over by ``now``."""
    found = browsed(profile, config.views)
    if found is None:
        return None, None  # added to the cart, or a new session began
    product, views, _ = found
    start, last = profile["session"][0], profile["session"][1]
    if now < last + config.idle_ms:
        return None, last + config.idle_ms  # the session went on: wait for its end
    if opted_out(profile, opt_out_traits):
        return None, None
    due = last + config.idle_ms
    if not due_again(profile, NAME, due, config.cooldown_ms):
        return None, None
    trigger = f"session@{start}"
    return {
        "id": moment_id(NAME, profile["user"], product, trigger),
        "type": NAME,
        "user": profile["user"],
        "store_id": None,
        "event_ts": due,
        "trigger_id": trigger,
        "product_id": product,
        "views": views,
    }, None


def context(
    profile: Profile, moment: Moment, reference: Reference, config: Any, vectors: Any = None
) -> ContextSlice:
    """The name, the tier, and the product looked at; nothing else was.
    The moment names its products: the taste (``vectors``) picks none."""
    product = reference.products.get(moment["product_id"])
    products = tuple(allowed(profile, [product] if product is not None else []))
    first_name, tier, used = name_and_tier(profile)
    used += [f"view:{p.id}" for p in products] + reply_used(profile)
    return ContextSlice(None, first_name, tier, None, products, tuple(used), NAME, "viewed")


SYSTEM = (
    "You write one short, friendly note to a customer who looked at a product several times "
    "in our online shop but did not buy it. Use only the facts in the customer data and call "
    "the customer by their first_name. " + RULES
)
EXAMPLES = (
    (
        {"viewed": ["Canvas tote"], "first_name": "Sam"},
        "Canvas tote",
        {"product_id": "p-402",
         "headline": "Sam, still eyeing the tote?",
         "message": "Hi Sam, the Canvas tote caught your eye and it is still here for you."},
    ),
    (
        {"viewed": ["Daypack 22L"], "first_name": "Lena"},
        "Daypack 22L",
        {"product_id": "p-203",
         "headline": "Lena, the Daypack 22L is waiting",
         "message": "You looked at the Daypack 22L a few times, Lena, take it home today."},
    ),
)  # fmt: skip


def prompt(context: ContextSlice) -> Prompt:
    return worked_prompt("browse_abandoned.v2", SYSTEM, EXAMPLES, _task, context)


def _task(facts: dict[str, Any], product: str | None) -> str:
    focus = f"Mention the {product}." if product else "Mention what they looked at."
    return (
        f"Customer data: {orjson.dumps(facts).decode()}\n"
        f"The customer looked at a product several times but did not add it to their cart. "
        f"{focus}"
    )


def template(context: ContextSlice, discount_pct: int) -> Draft:
    product = context.products[0] if context.products else None
    name = f", {context.first_name}" if context.first_name else ""
    thing = f"the {product.name}" if product else "it"
    return Draft(
        headline=f"Still thinking about {thing}{name}?",
        message=f"You came back to {thing} a few times.",
        product_id=product.id if product else None,
    )


TIMER = Timer(
    watches=frozenset({"track", "absorb", "order"}),
    started_at=last_view,
    wait_ms=lambda config: int(config.idle_ms),
    fire=browse_abandoned,
)
# Like a cart: the same afternoon.
MAX_AGE_MS = 6 * 3_600_000
TYPE = MomentType(
    NAME, BrowseAbandoned, context, prompt, template, max_age_ms=MAX_AGE_MS, timer=TIMER,
    redeem="Order it", channels=("push", "email"),
)  # fmt: skip
