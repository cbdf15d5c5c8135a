"""Prompts: the parts every moment type's versioned prompt is built from
(each type's brief and worked examples are in agents/moment_types/).

Customer facts go in as JSON data under a fixed instruction; they are never
spliced into the instructions, so text a user typed (a name, say) is read as
data. The output is constrained by a JSON schema that vLLM enforces: the
product is one of the context's, and the headline and the message match a
pattern of allowed words (models/vocabulary.py) within a length, so no other
name, no digit, currency, ``%``, ``@`` or link can be generated. The model
never states terms: kairos writes that sentence itself (:func:`terms_sentence`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from models.context import ContextSlice
from models.vocabulary import text_pattern

# The brief every moment type's system prompt ends with.
RULES = (
    "Write one short sentence for the headline and one for the message. "
    "Never mention discounts, prices, codes, links or dates: the offer's terms are added "
    "for you. Reply in JSON."
)
# One short sentence each; the message may run to a second, which a
# cut answer loses (models/guardrails.py keeps its last complete sentence).
# A headline such as "Nadia, come see the Single-origin coffee beans in
# store." is 56 characters: at 50 the pattern cut the longer ones mid-word.
HEADLINE_MAX = 72
MESSAGE_MAX = 120
MESSAGE_SENTENCES = 2
# JSON has no blank line: two newlines are a model looping on the whitespace
# a server lets it put between fields (the embedded one allows none:
# models/server.py).
STOP = ("\n\n",)


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
    "b": " Keep the message under 12 words and open with the customer's name.",
}


def variant_for(user: str, moment_type: str) -> str:
    digest = hashlib.sha256(f"variant|{moment_type}|{user}".encode()).digest()
    return sorted(VARIANTS)[digest[0] % len(VARIANTS)]


def with_variant(prompt: Prompt, variant: str) -> Prompt:
    system = dict(prompt.messages[0], content=prompt.messages[0]["content"] + VARIANTS[variant])
    return Prompt(prompt.version, [system, *prompt.messages[1:]], prompt.schema, variant)


def worked_prompt(
    version: str, system: str, examples: Sequence[tuple[Any, ...]], task: Callable[..., str],
    context: ContextSlice, *about: str,
) -> Prompt:  # fmt: skip
    """A moment type's prompt: each example is ``task``'s arguments then the answer
    it shows; the live task is ``task(facts, *about, focus product)``. No
    discount goes in: the model never states terms."""
    focus = context.products[0].name if context.products else None
    shots = [(task(*example[:-1]), example[-1]) for example in examples]
    now = task(context.as_prompt_data(), *about, focus)
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
    return Prompt(version, messages, offer_schema(context))


def offer_schema(context: ContextSlice) -> dict[str, Any]:
    """The answer's JSON schema. The product comes first, so an answer cut by
    the token limit has it, and the message last, so a cut loses only its end."""
    product_ids = [p.id for p in context.products]
    properties: dict[str, Any] = {}
    if product_ids:
        properties["product_id"] = {"type": "string", "enum": product_ids}
    properties["headline"] = {
        "type": "string", "minLength": 3, "maxLength": HEADLINE_MAX,
        "pattern": text_pattern(context, 1, end=False),
    }  # fmt: skip
    properties["message"] = {
        "type": "string", "minLength": 10, "maxLength": MESSAGE_MAX,
        "pattern": text_pattern(context, MESSAGE_SENTENCES, end=True),
    }  # fmt: skip
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def terms_sentence(redeem: str, discount_pct: int, ttl_s: float) -> str:
    """The offer's terms, written by kairos: how to redeem, the discount, the expiry."""
    hours = ttl_s / 3600
    within = f"{hours:g} hours" if hours >= 2 else f"{max(1, round(ttl_s / 60))} minutes"
    return f"{redeem} for {discount_pct}% off within {within}."
