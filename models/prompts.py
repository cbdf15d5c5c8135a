"""Prompt templates, versioned per moment type.

Customer facts go in as JSON data under a fixed instruction; they are never
spliced into the instructions, so text a user typed (a name, say) is read as
data. The output is constrained by a JSON schema that vLLM enforces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from models.context import ContextSlice

HEADLINE_MAX = 60
MESSAGE_MAX = 200

SYSTEM = (
    "You write one short, friendly in-store offer for a retail app. "
    "Use only the facts in the customer data. Never include links, prices or codes. "
    "Reply in JSON."
)


@dataclass(frozen=True)
class Prompt:
    version: str
    messages: list[dict[str, str]]
    schema: dict[str, Any]


def store_entry_prompt(context: ContextSlice, discount_pct: int) -> Prompt:
    facts = orjson.dumps(context.as_prompt_data()).decode()
    if context.products:
        focus = f"Invite them to see the {context.products[0].name} in store."
    else:
        focus = "Invite them to look around the store."
    task = (
        f"Customer data: {facts}\n"
        f"The customer just walked into our {context.store.name} store. {focus} "
        f"Say they get {discount_pct}% off today. "
        "Write a headline of at most 8 words and a message of one or two sentences."
    )
    return Prompt(
        version="store_entry.v1",
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": task}],
        schema=offer_schema([p.id for p in context.products]),
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
