"""The moment types, registered once. Adding one is a module here and a line below.

Every other part of kairos reaches a moment type through :data:`MOMENT_TYPES`
(or the three helpers that look one up): the fold for its rule, the rules
file for its section, the offers stage for its context, prompt and template.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from typing import Any

from agents.moment_types import browse_abandoned, cart_abandoned, store_entry, win_back
from agents.moment_types.base import Moment, MomentType, RuleConfig, Timer
from agents.profile import Profile
from models.context import DEFAULT_BUDGET_TOKENS, ContextSlice, within_budget
from models.guardrails import Draft
from models.prompts import Prompt, terms_sentence, with_variant
from streams.reference import Reference
from streams.vectors import ProductVectors

MOMENT_TYPES: dict[str, MomentType] = {
    kind.name: kind
    for kind in (store_entry.TYPE, cart_abandoned.TYPE, win_back.TYPE, browse_abandoned.TYPE)
}
STORE_ENTRY = store_entry.NAME
log = logging.getLogger(__name__)

__all__ = [
    "MOMENT_TYPES", "STORE_ENTRY", "Moment", "MomentType", "RuleConfig", "Timer",
    "fallback", "prompt_for", "reference_used", "select_context", "stale", "with_terms",
]  # fmt: skip


def stale(moment: Moment, now: int) -> bool:
    """Whether an offer for ``moment`` going out at ``now`` (wall clock) would be
    later after the moment's event time than its type allows (``max_age_ms``)."""
    kind, ts = MOMENT_TYPES.get(moment.get("type", STORE_ENTRY)), moment.get("event_ts")
    return kind is not None and isinstance(ts, int) and now - ts > kind.max_age_ms


def select_context(
    profile: Profile,
    moment: Moment,
    reference: Reference,
    config: RuleConfig,
    budget_tokens: int = DEFAULT_BUDGET_TOKENS,
    vectors: ProductVectors | None = None,
) -> ContextSlice:
    """The facts for this moment (``config`` is its type's rules), ranked (by the
    person's taste too, given product ``vectors``), and cut to ``budget_tokens``
    of prompt data."""
    kind = MOMENT_TYPES[moment.get("type", STORE_ENTRY)]
    chosen = kind.context(profile, moment, reference, config, vectors)
    return within_budget(chosen, budget_tokens)


def reference_used(
    profile: Profile, moment: Moment, reference: Reference, config: RuleConfig,
    vectors: ProductVectors | None = None,
) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """The stores and products ``moment``'s context draws on, as reference rows:
    recorded with the moment, so `kairos eval` judges it with the names, the
    categories and the store as they were (streams/tools/evaluate.py). Its
    store and at most ``MAX_PRODUCTS`` products, before the token budget cuts;
    none if no context can be built. It is only a record for eval, made in the
    fold (timers too), so no failure of a moment type's context may stop it."""
    try:
        context = MOMENT_TYPES[moment.get("type", STORE_ENTRY)].context(
            profile, moment, reference, config, vectors
        )
    except Exception:  # the offer stage meets the same failure, and reports it
        log.debug("no reference slice for moment %s", moment.get("id"), exc_info=True)
        return {"stores": [], "products": []}
    stores = [asdict(context.store)] if context.store is not None else []
    return {"stores": stores, "products": [asdict(p) for p in context.products]}


def prompt_for(moment_type: str, context: ContextSlice, variant: str = "a") -> Prompt:
    return with_variant(MOMENT_TYPES[moment_type].prompt(context), variant)


def with_terms(draft: Draft, context: ContextSlice, discount_pct: int, ttl_s: float) -> Draft:
    """``draft`` with kairos's terms sentence after its message."""
    terms = terms_sentence(MOMENT_TYPES[context.moment_type].redeem, discount_pct, ttl_s)
    return replace(draft, message=f"{draft.message} {terms}")


def fallback(context: ContextSlice, discount_pct: int) -> Draft:
    """The template message used when the model's answer cannot be sent."""
    return MOMENT_TYPES[context.moment_type].template(context, discount_pct)
