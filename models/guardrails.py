"""Guardrails: model text is checked before anyone sees it, by allow-list.

The model writes words only, and no terms: the discount, how to redeem it
and the expiry are a sentence kairos writes itself (models/prompts.py
``terms_sentence``), and coupon codes are minted by kairos
(agents/coupons.py). vLLM's structured output already keeps the text to the
allowed words (models/vocabulary.py); these checks are the defence in depth,
for a server that does not enforce it and for what a pattern cannot say
("half price" is made of allowed words). A rejected answer falls back to the
template message, and its reason, one of :data:`REASONS`, is recorded on the
offer and counted (``kairos_llm_fallbacks_total{reason}``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from models.context import ContextSlice
from models.prompts import HEADLINE_MAX, MESSAGE_MAX
from models.vocabulary import names, unknown_capitals
from streams.errors import KairosError

# Every reason an answer is rejected for: a bounded set of metric label values.
REASONS = frozenset({
    "invalid_json", "schema", "control_characters", "truncated", "unknown_product",
    "repetitive", "contact", "personal_data", "code_like", "offer_terms", "prompt_echo",
    "pressure", "health_claim", "unknown_name",
})  # fmt: skip


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


NUMBER = (
    r"zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
    r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|"
    r"sixty|seventy|eighty|ninety|hundred|thousand|half|quarter|double|triple"
)
# (reason, pattern), in the order checked: the first match names the reason.
SCREENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("personal_data", re.compile(r"(?:\d[ -]?){13,19}")),  # a card number
    ("personal_data", _words(
        r"card numbers?", r"credit cards?", r"debit cards?", r"cvv", r"cvc", r"pin",
        r"passwords?", r"passcodes?", r"social security", r"ssn", r"date of birth",
        r"bank account", r"account numbers?", r"sort code", r"iban", r"home address",
        r"your address", r"mother's maiden name",
    )),
    ("contact", re.compile(r"@|://|\bwww\b|\bhttps?\b", re.IGNORECASE)),
    ("contact", re.compile(r"\+?\d[\d ().-]{5,}\d")),  # a phone number
    ("contact", re.compile(
        r"(?:\.|\bdot\b|\(dot\)|\[dot\])\s*"
        r"(?:com|net|org|io|co|ly|uk|shop|store|app|biz|info)\b"
        r"|\(at\)|\[at\]|\bslash\b|\bat\s+\w+\s+dot\b",
        re.IGNORECASE,
    )),
    ("contact", _words(
        r"(?:call|phone|text|ring|email|e-mail|message|dm|whatsapp|contact)\s+(?:us|me|our)",
        r"phone numbers?", r"our number", r"email address", r"hotline", r"whatsapp",
        r"(?:" + NUMBER + r")(?:[\s-]+(?:" + NUMBER + r")){4,}",  # digits spelled out
    )),
    ("prompt_echo", re.compile(r"[{}<>\[\]\\|#*_`=]")),
    ("prompt_echo", _words(
        r"ignore\w*", r"disregard\w*", r"instructions?", r"system prompt", r"prompts?",
        r"customer data", r"first_?name", r"loyalty_?tier", r"recently_?viewed",
        r"favorite_?category", r"json", r"as an ai", r"language model", r"assistant",
        r"jailbreak", r"developer mode", r"override", r"reply in", r"the rules",
        r"you are an? \w+ (?:model|bot|assistant)", r"loyalty tier",
    )),
    ("code_like", _words(
        r"codes?", r"promo\w*", r"coupons?", r"vouchers?", r"redeem\w*", r"enter \w+ at checkout",
        r"apply \w+ at checkout",
    )),
    ("code_like", re.compile(r"\b(?=[A-Za-z]*\d)(?=\d*[A-Za-z])[A-Za-z0-9]{3,}\b")),
    ("code_like", re.compile(r"\b[A-Z]{3,}\b")),  # other capitalised words: unknown_name
    ("offer_terms", re.compile(r"[%$€£¥¢]|\d")),
    ("offer_terms", _words(
        r"percent", r"per cent", r"pct", r"half", r"prices?", r"priced", r"pricing",
        r"discount\w*", r"sales?", r"deals?", r"saves?", r"savings?", r"bogo", r"b1g1",
        r"buy (?:" + NUMBER + r"|a|an)\b.*\bget", r"\w+ for (?:the price of )?(?:one|two)",
        r"(?<!feel )free", r"freebies?", r"gratis", r"complimentary", r"on the house",
        r"cash ?back", r"rebates?", r"bargains?", r"cheap\w*", r"clearance", r"markdowns?",
        r"reduced", r"dollars?", r"euros?", r"pounds?", r"bucks?", r"cents?", r"quid",
        r"till", r"expir\w*", r"valid (?:until|till|through|for)", r"points",
        r"(?:" + NUMBER + r")(?:\s+|-)(?:percent|per cent|off|dollars?|bucks|pounds?|euros?)",
        r"ten|fifteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred",
        r"(?:get|take|enjoy|extra|save)\s+\w+\s+off", r"off (?:your|the|any|all|everything)",
    )),
    ("pressure", _words(
        r"hurry", r"rush", r"act (?:now|fast)", r"last chance", r"limited time", r"only today",
        r"today only", r"ends (?:soon|tonight|today|at)", r"before (?:it's|they're|it is) gone",
        r"don't miss", r"do not miss", r"selling fast", r"almost gone", r"only \w+ left",
        r"few left", r"running out", r"now or never", r"urgent\w*", r"guarantee\w*",
        r"winner", r"you(?:'ve| have) won", r"immediately", r"final hours",
        r"while (?:stocks|supplies) last",
        r"you must", r"or else", r"missing out",
    )),
    ("health_claim", _words(
        r"cures?", r"cured", r"heal\w*", r"treatments?", r"treats? (?:pain|injur\w*|disease)",
        r"lose weight", r"weight loss", r"burn\w* fat", r"fat burn\w*", r"immun\w*",
        r"clinical\w*", r"doctors?", r"medical\w*", r"detox\w*", r"pain relief",
        r"relieves? pain", r"prevents? (?:injur\w*|disease|illness)", r"diseases?",
        r"illness\w*", r"anxiety", r"arthritis", r"diabetes", r"cancer", r"therap\w*",
        r"healthier", r"health benefits?", r"improves? (?:your )?health", r"joint pain",
    )),
)  # fmt: skip


class Rejected(KairosError, ValueError):
    """Model output that may not be sent; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        assert reason in REASONS, reason  # label values stay bounded
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Draft:
    headline: str
    message: str
    product_id: str | None


def check(text: str, context: ContextSlice, finish_reason: str | None = None) -> Draft:
    """Parse and validate the model's JSON answer, or raise Rejected.

    An answer cut short (the token limit, or the message's maximum length)
    keeps its message up to the last complete sentence; a cut headline, or
    a message without one complete sentence, is ``truncated``."""
    cut = finish_reason == "length"
    data = _parse(text, cut)
    if cut and "message" not in data:
        raise Rejected("truncated", "the headline was cut")
    headline = _text(data, "headline")
    if len(headline) >= HEADLINE_MAX - 1:
        headline = last_clause(headline)
    message = _text(data, "message")
    if cut or len(message) >= MESSAGE_MAX - 1:
        message = last_complete_sentence(message)
    product_id = data.get("product_id")
    allowed = {p.id for p in context.products}
    if product_id is not None and product_id not in allowed:
        raise Rejected("unknown_product", f"product {product_id!r} is not in the context")
    # The model picks the product before it writes (the schema's order); the
    # product the text names is the one the customer reads about.
    named = [p.id for p in context.products if p.name.lower() in f"{headline} {message}".lower()]
    product_id = named[0] if named else product_id
    if message.lower().startswith(headline.lower()) or _loops(message) or _loops(headline):
        raise Rejected("repetitive", "the message repeats itself")
    for part in (headline, message):
        screen(part, context)
    return Draft(headline, message, product_id if isinstance(product_id, str) else None)


def _parse(text: str, cut: bool) -> dict:
    closings = ("", '"}', "}") if cut else ("",)
    for closing in closings:
        try:
            data = orjson.loads(text + closing)
        except orjson.JSONDecodeError as exc:
            error = str(exc)
            continue
        if not isinstance(data, dict):
            raise Rejected("invalid_json", "answer is not a JSON object")
        return data
    raise Rejected("truncated" if cut else "invalid_json", error)


def _text(data: dict, field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str):
        raise Rejected("schema", f"'{field}' is missing or not a string")
    if any(not c.isprintable() for c in value):
        raise Rejected("control_characters", f"'{field}' has non-printable characters")
    value = " ".join(value.split())
    if len(value) < 3:
        raise Rejected("schema", f"'{field}' is empty")
    return value


def last_complete_sentence(text: str) -> str:
    """``text`` up to its last sentence that ends before the cut, or Rejected."""
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", text)]
    if not ends:
        raise Rejected("truncated", "the message was cut before its first sentence ended")
    return text[: ends[-1]]


def last_clause(text: str) -> str:
    """A headline cut at its maximum length, up to its last comma or sentence end
    (three words at least), or Rejected."""
    for match in reversed(list(re.finditer(r"[,.!?](?=\s)", text))):
        kept = text[: match.start() + (match.group(0) != ",")]
        if len(kept.split()) >= 3:
            return kept
    raise Rejected("truncated", "the headline was cut before its first clause ended")


def _loops(text: str, n: int = 4, times: int = 2) -> bool:
    """True when some run of ``n`` words occurs ``times`` times or more, or
    two words twice in a row ("love them, love them")."""
    words = re.findall(r"[a-z']+", text.lower())
    if any(words[i : i + 2] == words[i + 2 : i + 4] for i in range(len(words) - 3)):
        return True
    runs: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        run = tuple(words[i : i + n])
        runs[run] = runs.get(run, 0) + 1
        if runs[run] >= times:
            return True
    return False


def screen(text: str, context: ContextSlice) -> None:
    """Reject ``text`` unless it names only the context and holds none of the screens."""
    if any(not c.isprintable() for c in text):
        raise Rejected("control_characters", "text has non-printable characters")
    bare = text
    for name in names(context):  # a product's own digits ("Daypack 22L") are its name
        bare = bare.replace(name, "Name")
    for reason, pattern in SCREENS:
        found = pattern.search(bare)
        if found:
            raise Rejected(reason, f"text contains {found.group(0)!r}")
    unknown = unknown_capitals(text, context)
    if unknown:
        raise Rejected("unknown_name", f"text names {unknown[0]!r}, which is not in the context")
