"""Win-back: a shopper who has not been back to a store for ``lapsed_days``.

The wait starts when a store visit begins; when it runs out and the visit
went on, it waits for that visit's end instead. A shopper who came back
since has a newer visit, with its own wait.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from pydantic import Field

from agents.moment_types.base import Moment, MomentType, RuleConfig, Timer, send_within_limit
from agents.moment_types.store_entry import store_context
from agents.moments import OPT_OUT_TRAITS, due_again, last_store_visit, moment_id, opted_out
from agents.profile import Profile
from models.context import ContextSlice
from models.guardrails import Draft
from models.prompts import RULES, Prompt, worked_prompt
from streams.reference import Reference
from streams.vectors import ProductVectors

NAME = "win_back"
DAY_MS = 86_400_000
# A lapsed shopper's views are old: any still remembered may be used.
VIEWS_MS = 365 * DAY_MS


# A lapse of weeks may still be told days late (a worker down over a weekend).
MAX_AGE_MS = 7 * DAY_MS
HOUR_MS = 3_600_000


class WinBack(RuleConfig):
    lapsed_days: float = Field(default=30, gt=0)
    cooldown_days: float = Field(default=30, ge=0)
    # After the lapse, the invitation waits up to this long for the person's
    # usual hour (and out of quiet hours); a day reaches any hour.
    send_within_hours: float = Field(default=24, ge=0, le=send_within_limit(MAX_AGE_MS) / HOUR_MS)

    @property
    def send_within_ms(self) -> int:
        return int(self.send_within_hours * HOUR_MS)

    @property
    def lapsed_ms(self) -> int:
        return int(self.lapsed_days * DAY_MS)

    @property
    def cooldown_ms(self) -> int:
        return int(self.cooldown_days * DAY_MS)


def win_back(
    profile: Profile, now: int, *, lapsed_ms: int, cooldown_ms: int,
    opt_out_traits: tuple[str, ...] = OPT_OUT_TRAITS,
) -> Moment | None:  # fmt: skip
    """The win-back moment, if the latest store visit ended ``lapsed_ms`` before ``now``."""
    held = profile.get("last_store")
    if not held or now < held[2] + lapsed_ms:
        return None  # never visited, or came back since: that visit has its own timer
    if opted_out(profile, opt_out_traits):
        return None
    store_id, entered, last = held
    due = last + lapsed_ms
    if not due_again(profile, NAME, due, cooldown_ms):
        return None
    trigger = f"visit@{entered}"
    return {
        "id": moment_id(NAME, profile["user"], store_id, trigger),
        "type": NAME,
        "user": profile["user"],
        "store_id": store_id,
        "event_ts": due,
        "trigger_id": trigger,
    }


def fire(
    profile: Profile, now: int, config: WinBack, opt_out_traits: tuple[str, ...]
) -> tuple[Moment | None, int | None]:
    held = profile.get("last_store")
    if held and now < held[2] + config.lapsed_ms:  # the visit went on: wait for its end
        return None, held[2] + config.lapsed_ms
    moment = win_back(profile, now, lapsed_ms=config.lapsed_ms, cooldown_ms=config.cooldown_ms,
                      opt_out_traits=opt_out_traits)  # fmt: skip
    return moment, None


def context(
    profile: Profile, moment: Moment, reference: Reference, config: Any,
    vectors: ProductVectors | None = None,
) -> ContextSlice:  # fmt: skip
    """The store-entry context of the store (or the first store, if it closed),
    from any view still remembered; KeyError, as for a store entry, if no store
    is left."""
    held = reference.stores.get(moment["store_id"] or "")
    store = held or next(iter(reference.stores.values()), None)
    if store is None:  # not StopIteration: that one escapes generators as a RuntimeError
        raise KeyError(moment["store_id"])
    base = store_context(profile, {**moment, "store_id": store.id}, reference, VIEWS_MS, vectors)
    return replace(base, store=store, moment_type=NAME)


SYSTEM = (
    "You write one short, warm message inviting a customer back to a store they have not "
    "visited for a while. Use only the facts in the customer data and call the customer by "
    "their first_name. " + RULES
)
EXAMPLES = (
    (
        {"store": "SoHo", "recently_viewed": ["Canvas tote"], "first_name": "Sam"},
        "SoHo",
        "Canvas tote",
        {"product_id": "p-402",
         "headline": "Sam, we miss you at SoHo",
         "message": "Hi Sam, it has been a while, come back to SoHo and see the Canvas tote."},
    ),
)  # fmt: skip


def prompt(context: ContextSlice) -> Prompt:
    assert context.store is not None
    return worked_prompt("win_back.v2", SYSTEM, EXAMPLES, _task, context, context.store.name)


def _task(facts: dict[str, Any], store: str, product: str | None) -> str:
    focus = f" Mention the {product}." if product else ""
    return (
        f"Customer data: {orjson.dumps(facts).decode()}\n"
        f"The customer has not visited our {store} store for a while. Invite them back.{focus}"
    )


def template(context: ContextSlice, discount_pct: int) -> Draft:
    assert context.store is not None
    product = context.products[0] if context.products else None
    hello = f"Hi {context.first_name}, it's" if context.first_name else "It's"
    focus = f" The {product.name} is waiting." if product else ""
    return Draft(
        headline=f"We miss you at {context.store.name}",
        message=f"{hello} been a while! Come back to {context.store.name} this week.{focus}",
        product_id=product.id if product else None,
    )


TIMER = Timer(
    watches=frozenset({"location", "absorb"}),
    started_at=last_store_visit,
    wait_ms=lambda config: int(config.lapsed_ms),
    fire=fire,
    send_within_ms=lambda config: int(config.send_within_ms),
)
TYPE = MomentType(
    NAME, WinBack, context, prompt, template, max_age_ms=MAX_AGE_MS, timer=TIMER,
    redeem="Show this offer at the till on your next visit", channels=("email", "push"),
)  # fmt: skip
