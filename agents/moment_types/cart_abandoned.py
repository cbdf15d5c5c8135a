"""Cart abandonment: products in the cart, no change to it and no order for
``idle_minutes``.

An order empties the cart (the items added before it), so a cart still
holding products after the idle time was left. Fires once per cart state:
the moment's time is when the idle time ran out, and the next one must be
``cooldown_minutes`` later. Judged on event time, once the partition's
watermark passes the idle time's end (agents/clock.py): so it fires about
``KAIROS_ALLOWED_LATENESS_S`` (plus up to a tick) after it, and an order that
came before it, however late it was read, means no moment.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import Field

from agents.moment_types.base import Moment, MomentType, RuleConfig, Timer, send_within_limit
from agents.moment_types.facts import name_and_tier
from agents.moments import OPT_OUT_TRAITS, cart_changed_at, due_again, moment_id, opted_out
from agents.profile import Profile
from agents.replies import allowed
from agents.replies import used as reply_used
from models.context import MAX_PRODUCTS, ContextSlice
from models.guardrails import Draft
from models.prompts import RULES, Prompt, worked_prompt
from streams.reference import Reference

NAME = "cart_abandoned"


# A reminder the same afternoon still helps; the next day it is noise.
MAX_AGE_MS = 6 * 3_600_000


class CartAbandoned(RuleConfig):
    idle_minutes: float = Field(default=30, gt=0)
    cooldown_minutes: float = Field(default=1440, ge=0)
    # After the idle time, the reminder waits up to this long for the
    # person's usual hour (and out of quiet hours): bounded so it is never stale.
    send_within_minutes: float = Field(default=180, ge=0, le=send_within_limit(MAX_AGE_MS) / 60_000)

    @property
    def send_within_ms(self) -> int:
        return int(self.send_within_minutes * 60_000)

    @property
    def idle_ms(self) -> int:
        return int(self.idle_minutes * 60_000)

    @property
    def cooldown_ms(self) -> int:
        return int(self.cooldown_minutes * 60_000)


def cart_abandoned(
    profile: Profile, now: int, *, idle_ms: int, cooldown_ms: int,
    opt_out_traits: tuple[str, ...] = OPT_OUT_TRAITS,
) -> Moment | None:  # fmt: skip
    """The cart-abandonment moment, if the cart has sat unchanged for ``idle_ms`` by ``now``."""
    changed = cart_changed_at(profile)
    if changed is None or now < changed + idle_ms:
        return None
    if opted_out(profile, opt_out_traits):
        return None
    due = changed + idle_ms
    if not due_again(profile, NAME, due, cooldown_ms):
        return None
    products = sorted(profile["cart"])
    trigger = f"cart@{changed}"
    return {
        "id": moment_id(NAME, profile["user"], ",".join(products), trigger),
        "type": NAME,
        "user": profile["user"],
        "store_id": None,
        "event_ts": due,
        "trigger_id": trigger,
        "cart": products,
    }


def fire(
    profile: Profile, now: int, config: CartAbandoned, opt_out_traits: tuple[str, ...]
) -> tuple[Moment | None, int | None]:
    moment = cart_abandoned(profile, now, idle_ms=config.idle_ms, cooldown_ms=config.cooldown_ms,
                            opt_out_traits=opt_out_traits)  # fmt: skip
    return moment, None


def context(
    profile: Profile, moment: Moment, reference: Reference, config: Any, vectors: Any = None
) -> ContextSlice:
    """The name, the tier, and the products in the cart, dearest first.
    The moment names its products: the taste (``vectors``) picks none."""
    known = [reference.products[p] for p in moment["cart"] if p in reference.products]
    known = allowed(profile, known)  # not what a reply excluded (agents/replies.py)
    products = sorted(known, key=lambda product: product.price, reverse=True)[:MAX_PRODUCTS]
    first_name, tier, used = name_and_tier(profile)
    used += [f"cart:{p.id}" for p in products] + reply_used(profile)
    return ContextSlice(None, first_name, tier, None, tuple(products), tuple(used), NAME, "cart")


SYSTEM = (
    "You write one short, friendly reminder about items left in an online shopping cart. "
    "Use only the facts in the customer data and call the customer by their first_name. " + RULES
)
EXAMPLES = (
    (
        {"cart": ["Canvas tote"], "first_name": "Sam"},
        "Canvas tote",
        {"product_id": "p-402",
         "headline": "Sam, your tote is waiting",
         "message": "Hi Sam, the Canvas tote is still in your cart whenever you are ready."},
    ),
    (
        {"cart": ["Daypack 22L", "Merino running socks"], "first_name": "Lena"},
        "Daypack 22L",
        {"product_id": "p-203",
         "headline": "Lena, still want the Daypack 22L?",
         "message": "Your Daypack 22L is saved in your cart, Lena, ready when you are."},
    ),
)  # fmt: skip


def prompt(context: ContextSlice) -> Prompt:
    return worked_prompt("cart_abandoned.v2", SYSTEM, EXAMPLES, _task, context)


def _task(facts: dict[str, Any], product: str | None) -> str:
    focus = f"Remind them the {product} is waiting." if product else "Remind them of their cart."
    return (
        f"Customer data: {orjson.dumps(facts).decode()}\n"
        f"The customer left items in their cart. {focus}"
    )


def template(context: ContextSlice, discount_pct: int) -> Draft:
    product = context.products[0] if context.products else None
    name = f", {context.first_name}" if context.first_name else ""
    item = f"The {product.name} is" if product else "Your picks are"
    return Draft(
        headline=f"Still thinking it over{name}?",
        message=f"{item} still in your cart.",
        product_id=product.id if product else None,
    )


TIMER = Timer(
    watches=frozenset({"track", "absorb", "order"}),
    started_at=cart_changed_at,
    wait_ms=lambda config: int(config.idle_ms),
    fire=fire,
    send_within_ms=lambda config: int(config.send_within_ms),
)
TYPE = MomentType(
    NAME,
    CartAbandoned,
    context,
    prompt,
    template,
    max_age_ms=MAX_AGE_MS,
    timer=TIMER,
    redeem="Complete your order",
    channels=("push", "email"),
)
