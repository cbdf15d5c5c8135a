"""Prompts: the parts every moment type's versioned prompt is built from
(each type's brief and worked examples are in agents/moment_types/).

Customer facts go in as JSON data under a fixed instruction; they are never
spliced into the instructions, so text a user typed (a name, say) is read as
data. The output is constrained by a JSON schema that vLLM enforces.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from models.context import ContextSlice

HEADLINE_MAX = 80
MESSAGE_MAX = 200

# The customers of every moment type's worked examples: a model that copies
# an example names one of them, which the guardrails reject.
EXAMPLE_NAMES = ("Sam", "Lena")


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


def with_variant(prompt: Prompt, variant: str) -> Prompt:
    system = dict(prompt.messages[0], content=prompt.messages[0]["content"] + VARIANTS[variant])
    return Prompt(prompt.version, [system, *prompt.messages[1:]], prompt.schema, variant)


def worked_prompt(
    version: str, system: str, examples: Sequence[tuple[Any, ...]], task: Callable[..., str],
    context: ContextSlice, discount_pct: int, *about: str,
) -> Prompt:  # fmt: skip
    """A moment type's prompt: each example is ``task``'s arguments then the answer
    it shows; the live task is ``task(facts, *about, focus product, discount)``."""
    focus = context.products[0].name if context.products else None
    shots = [(task(*example[:-1]), example[-1]) for example in examples]
    now = task(context.as_prompt_data(), *about, focus, discount_pct)
    return few_shot(version, system, shots, now, context)


def few_shot(
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
