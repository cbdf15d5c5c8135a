"""Guardrails: model text is checked before anyone sees it.

The model writes words only. Discounts and coupon codes are minted by kairos
(agents/coupons.py); any code-like token, link or blocked word in the model's
text rejects it, and the offer falls back to a template message built from
the same context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from models.context import ContextSlice
from models.prompts import EXAMPLE_NAMES, HEADLINE_MAX, MESSAGE_MAX
from streams.errors import KairosError

URL = re.compile(r"(https?://|www\.|\b[a-z0-9-]+\.(com|net|org|io|co|ly)\b)", re.IGNORECASE)
# Upper-case letters mixed with digits (SAVE20, X7Q2K9): looks like a coupon code.
CODE_LIKE = re.compile(r"\b(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z0-9-]{4,}\b")
CODE_WORDS = re.compile(r"\b(promo|coupon|discount)\s+code\b", re.IGNORECASE)
MONEY = re.compile(r"([$€£¥]\s?\d|\d\s?(usd|eur|gbp|dollars?|euros?|pounds?)\b)", re.IGNORECASE)
PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?(%|percent\b)", re.IGNORECASE)
BLOCKED_WORDS = frozenset({"guarantee", "guaranteed", "free money", "winner", "urgent", "password"})


class Rejected(KairosError, ValueError):
    """Model output that may not be sent; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Draft:
    headline: str
    message: str
    product_id: str | None


def check(
    text: str, context: ContextSlice, discount_pct: int, finish_reason: str | None = None
) -> Draft:
    """Parse and validate the model's JSON answer, or raise Rejected."""
    if finish_reason == "length":
        raise Rejected("truncated", "the answer hit the token limit")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Rejected("invalid_json", str(exc)) from None
    if not isinstance(data, dict):
        raise Rejected("invalid_json", "answer is not a JSON object")
    headline = _text(data, "headline", HEADLINE_MAX)
    message = _text(data, "message", MESSAGE_MAX)
    product_id = data.get("product_id")
    allowed = {p.id for p in context.products}
    if product_id is not None and product_id not in allowed:
        raise Rejected("unknown_product", f"product {product_id!r} is not in the context")
    if message.lower().startswith(headline.lower()) or _loops(message):
        raise Rejected("repetitive", "the message repeats itself")
    for part in (headline, message):
        _screen(part, discount_pct)
        _names_only_the_customer(part, context)
    return Draft(headline, message, product_id if isinstance(product_id, str) else None)


def _text(data: dict, field: str, limit: int) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise Rejected("schema", f"'{field}' is missing or not a string")
    if any(not c.isprintable() for c in value):
        raise Rejected("control_characters", f"'{field}' has non-printable characters")
    value = " ".join(value.split())
    if len(value) < 3:
        raise Rejected("schema", f"'{field}' is empty")
    if len(value) >= limit:
        # The schema's maxLength stops generation mid-word at the limit.
        raise Rejected("truncated", f"'{field}' was cut at {limit} characters")
    return value


def _loops(text: str, n: int = 4, times: int = 3) -> bool:
    """True when some run of ``n`` words occurs ``times`` times or more."""
    words = text.lower().split()
    runs: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        run = tuple(words[i : i + n])
        runs[run] = runs.get(run, 0) + 1
        if runs[run] >= times:
            return True
    return False


def _names_only_the_customer(text: str, context: ContextSlice) -> None:
    """The prompt's worked examples name customers; they must not leak."""
    for name in EXAMPLE_NAMES:
        if context.first_name != name and re.search(rf"\b{name}\b", text):
            raise Rejected("wrong_customer", f"text names {name!r}, who is not this customer")


def _screen(text: str, discount_pct: int) -> None:
    if MONEY.search(text):
        raise Rejected("made_up_terms", "text names a price or an amount of money")
    for match in PERCENT.finditer(text):
        if float(match.group(1)) != discount_pct:
            raise Rejected("made_up_terms", f"text offers {match.group(0)}, not {discount_pct}%")
    if URL.search(text):
        raise Rejected("url", "text contains a link")
    if CODE_LIKE.search(text) or CODE_WORDS.search(text):
        raise Rejected("coupon_code", "text contains something that looks like a coupon code")
    lowered = text.lower()
    for word in BLOCKED_WORDS:
        if word in lowered:
            raise Rejected("blocked_word", f"text contains the blocked word {word!r}")
