"""Prompt templates, versioned per moment type.

Customer facts go in as JSON data under a fixed instruction; they are never
spliced into the instructions, so text a user typed (a name, say) is read as
data. The output is constrained by a JSON schema that vLLM enforces.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from models.context import ContextSlice

HEADLINE_MAX = 80
MESSAGE_MAX = 200

SYSTEM = (
    "You write one short, friendly in-store offer for a retail app. "
    "Use only the facts in the customer data and call the customer by their first_name. "
    "Never include links, prices or codes. Reply in JSON."
)


# Two worked examples: small models follow examples far better than rules,
# and two different customers show which parts change. They also show the
# compact JSON wanted (no whitespace for the model to loop on).
EXAMPLES = (
    (
        {"store": "SoHo", "recently_viewed": ["Canvas tote"], "first_name": "Sam"},
        "SoHo",
        "Canvas tote",
        10,
        {
            "headline": "Sam, your tote is here",
            "message": "Welcome to SoHo, Sam! The Canvas tote you liked is in store today. "
            "Enjoy 10% off.",
            "product_id": "p-402",
        },
    ),
    (
        {"store": "Flatiron", "recently_viewed": ["Daypack 22L"], "first_name": "Lena"},
        "Flatiron",
        "Daypack 22L",
        15,
        {
            "headline": "Lena, come see the Daypack",
            "message": "Hi Lena, welcome to Flatiron! Try the Daypack 22L you looked at, "
            "with 15% off just for today.",
            "product_id": "p-203",
        },
    ),
)
EXAMPLE_NAMES = tuple(example[0]["first_name"] for example in EXAMPLES)


@dataclass(frozen=True)
class Prompt:
    version: str
    messages: list[dict[str, str]]
    schema: dict[str, Any]
    variant: str = "a"


# A/B variants of every template: the same facts and examples, a different
# brief. A person always gets the same variant of a moment type, so outcomes
# can be compared per variant (the offer records it).
VARIANTS = {
    "a": "",
    "b": " Keep the message under 25 words and open with what the customer gets.",
}


def variant_for(user: str, moment_type: str) -> str:
    digest = hashlib.sha256(f"variant|{moment_type}|{user}".encode()).digest()
    return sorted(VARIANTS)[digest[0] % len(VARIANTS)]


def _with_variant(prompt: Prompt, variant: str) -> Prompt:
    system = dict(prompt.messages[0], content=prompt.messages[0]["content"] + VARIANTS[variant])
    return Prompt(prompt.version, [system, *prompt.messages[1:]], prompt.schema, variant)


def store_entry_prompt(context: ContextSlice, discount_pct: int) -> Prompt:
    assert context.store is not None
    focus = context.products[0].name if context.products else None
    shots = [(_task(facts, store, product, pct), answer)
             for facts, store, product, pct, answer in EXAMPLES]  # fmt: skip
    task = _task(context.as_prompt_data(), context.store.name, focus, discount_pct)
    return _few_shot("store_entry.v1", SYSTEM, shots, task, context)


def _few_shot(
    version: str, system: str, shots: list[tuple[str, dict[str, Any]]], task: str,
    context: ContextSlice,
) -> Prompt:  # fmt: skip
    """System brief, worked examples as earlier turns, then the task."""
    messages = [{"role": "system", "content": system}]
    for question, answer in shots:
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": orjson.dumps(answer).decode()})
    messages.append({"role": "user", "content": task})
    return Prompt(version, messages, offer_schema([p.id for p in context.products]))


CART_SYSTEM = (
    "You write one short, friendly reminder about items left in an online shopping cart. "
    "Use only the facts in the customer data and call the customer by their first_name. "
    "Never include links, prices or codes. Reply in JSON."
)
CART_EXAMPLES = (
    (
        {"cart": ["Canvas tote"], "first_name": "Sam"},
        "Canvas tote",
        10,
        {"headline": "Sam, your tote is waiting",
         "message": "Hi Sam, the Canvas tote is still in your cart. Finish your order today "
                    "and enjoy 10% off.",
         "product_id": "p-402"},
    ),
    (
        {"cart": ["Daypack 22L", "Merino running socks"], "first_name": "Lena"},
        "Daypack 22L",
        15,
        {"headline": "Lena, still want the Daypack?",
         "message": "Your Daypack 22L is saved in your cart, Lena. Check out today with "
                    "15% off.",
         "product_id": "p-203"},
    ),
)  # fmt: skip


def cart_abandoned_prompt(context: ContextSlice, discount_pct: int) -> Prompt:
    focus = context.products[0].name if context.products else None
    shots = [(_cart_task(facts, product, pct), answer)
             for facts, product, pct, answer in CART_EXAMPLES]  # fmt: skip
    task = _cart_task(context.as_prompt_data(), focus, discount_pct)
    return _few_shot("cart_abandoned.v1", CART_SYSTEM, shots, task, context)


WIN_BACK_SYSTEM = (
    "You write one short, warm message inviting a customer back to a store they have not "
    "visited for a while. Use only the facts in the customer data and call the customer by "
    "their first_name. Never include links, prices or codes. Reply in JSON."
)
WIN_BACK_EXAMPLES = (
    (
        {"store": "SoHo", "recently_viewed": ["Canvas tote"], "first_name": "Sam"},
        "SoHo",
        "Canvas tote",
        10,
        {"headline": "Sam, we miss you at SoHo",
         "message": "Hi Sam, it has been a while! Come back to SoHo this week for 10% off. "
                    "The Canvas tote is still here.",
         "product_id": "p-402"},
    ),
)  # fmt: skip


def win_back_prompt(context: ContextSlice, discount_pct: int) -> Prompt:
    assert context.store is not None
    focus = context.products[0].name if context.products else None
    shots = [(_win_back_task(facts, store, product, pct), answer)
             for facts, store, product, pct, answer in WIN_BACK_EXAMPLES]  # fmt: skip
    task = _win_back_task(context.as_prompt_data(), context.store.name, focus, discount_pct)
    return _few_shot("win_back.v1", WIN_BACK_SYSTEM, shots, task, context)


def _win_back_task(
    facts: dict[str, Any], store: str, product: str | None, discount_pct: int
) -> str:
    focus = f" Mention the {product}." if product else ""
    return (
        f"Customer data: {orjson.dumps(facts).decode()}\n"
        f"The customer has not visited our {store} store for a while. Invite them back.{focus} "
        f"Say they get {discount_pct}% off on a visit this week."
    )


def prompt_for(
    moment_type: str, context: ContextSlice, discount_pct: int, variant: str = "a"
) -> Prompt:
    if moment_type == "cart_abandoned":
        prompt = cart_abandoned_prompt(context, discount_pct)
    elif moment_type == "win_back":
        prompt = win_back_prompt(context, discount_pct)
    else:
        prompt = store_entry_prompt(context, discount_pct)
    return _with_variant(prompt, variant)


def _cart_task(facts: dict[str, Any], product: str | None, discount_pct: int) -> str:
    focus = f"Remind them the {product} is waiting." if product else "Remind them of their cart."
    return (
        f"Customer data: {orjson.dumps(facts).decode()}\n"
        f"The customer left items in their cart. {focus} "
        f"Say they get {discount_pct}% off if they complete the order today."
    )


def _task(facts: dict[str, Any], store: str, product: str | None, discount_pct: int) -> str:
    focus = (
        f"Invite them to see the {product} in store." if product else "Invite them to look around."
    )
    return (
        f"Customer data: {orjson.dumps(facts).decode()}\n"
        f"The customer just walked into our {store} store. {focus} "
        f"Say they get {discount_pct}% off today."
    )


def offer_schema(product_ids: list[str]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "headline": {"type": "string", "minLength": 3, "maxLength": HEADLINE_MAX},
        "message": {"type": "string", "minLength": 10, "maxLength": MESSAGE_MAX},
    }
    required = ["headline", "message"]
    if product_ids:
        properties["product_id"] = {"type": "string", "enum": product_ids}
        required.append("product_id")
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
