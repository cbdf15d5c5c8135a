"""The words an offer's text may use: declared once, for the schema and the guardrails.

The model's text may name only this customer, this store and the context's
products. So every capitalised word in it must be one of those names (or a
word of one), or one of the common sentence openers below; everything else
is lower case. No digits, currency, ``%``, ``@``, ``/``, ``:`` or quotes
exist in the alphabet, except inside a product or store name written out
whole ("Daypack 22L"). The same rule is a regular expression for vLLM's
structured output (models/prompts.py), which makes other names, codes,
prices, percentages and links impossible to generate, and a check on the
answer (models/guardrails.py), for servers that do not enforce it.
"""

from __future__ import annotations

import re

from models.context import ContextSlice

# Capitalised words any text may start a sentence (or a name's neighbour) with.
OPENERS = frozenset({
    "A", "After", "All", "Always", "An", "And", "Any", "As", "At", "Back", "Be", "Before", "But",
    "By", "Can", "Come", "Did", "Do", "Don't", "Drop", "Each", "Enjoy", "Even", "Every", "Explore",
    "Find", "For", "From", "Get", "Give", "Glad", "Go", "Good", "Great", "Happy", "Have", "Here",
    "Hello", "Hey", "Hi", "How", "I", "I'd", "I'll", "I'm", "I've", "If", "In", "Is", "It", "It's",
    "Its", "Just", "Keep", "Let", "Let's", "Look", "Looking", "Love", "Make", "May", "Maybe",
    "Meet", "Miss", "More", "Need", "New", "Nice", "No", "Not", "Now", "Of", "On", "Once", "One",
    "Our", "Pick", "Plan", "Please", "Pop", "Ready", "Remember", "See", "So", "Some", "Still",
    "Stop", "Sure", "Swing", "Take", "Than", "Thanks", "That", "That's", "The", "Their", "Then",
    "There", "This", "Those", "Time", "To", "Today", "Treat", "Try", "Up", "We", "We'd", "We'll",
    "We're", "We've", "Welcome", "What", "When", "Where", "Why", "With", "Would", "Yes", "You",
    "You'd", "You'll", "You're", "You've", "Your",
})  # fmt: skip
LOWER_WORD = r"[a-z]+(?:['-][a-z]+)*"
_META = re.compile(r"[\\^$.|?*+()\[\]{}]")


def names(context: ContextSlice) -> tuple[str, ...]:
    """What the text may name: the customer, the store, the products, longest first."""
    found = [p.name for p in context.products]
    if context.store is not None:
        found.append(context.store.name)
    if context.first_name:
        found.append(context.first_name)
    return tuple(sorted(set(found), key=lambda n: (-len(n), n)))


def capitals(context: ContextSlice) -> frozenset[str]:
    """Capitalised words the text may use besides the names written whole: the
    openers and the traits the prompt gave (a "Gold" tier). A product's or a
    store's own words are not among them: half a name ("the Linen throw-up")
    is not one of the context's."""
    traits = [t for t in (context.loyalty_tier, context.favorite_category) if t]
    words = {w for trait in traits for w in trait.split() if w[:1].isupper()}
    return OPENERS | {w for w in words if w.replace("-", "").replace("'", "").isalpha()}


def _escape(text: str) -> str:
    # Only regex metacharacters: llguidance and xgrammar reject some escapes
    # Python's re.escape writes (an escaped space, say).
    return _META.sub(lambda m: "\\" + m.group(0), text)


def text_pattern(context: ContextSlice, sentences: int, end: bool) -> str:
    """One to ``sentences`` sentences of allowed words, each ending in ``.``, ``!``
    or ``?`` (``end``) or the last one free to end without (a headline)."""
    caps = sorted(capitals(context) - set(names(context)), key=lambda w: (-len(w), w))
    capital = "(?:" + "|".join(_escape(w) for w in (*names(context), *caps)) + ")"
    word = f"(?:{capital}|{LOWER_WORD})"
    sentence = f"{capital}(?:,? {word})*"
    if sentences == 1:
        return f"^{sentence}[.!?]{'' if end else '?'}$"
    more = f"(?: {sentence}[.!?]){{0,{sentences - 1}}}"
    return f"^{sentence}[.!?]{more}$"


def unknown_capitals(text: str, context: ContextSlice) -> list[str]:
    """The capitalised words of ``text`` outside the allow-list (after taking
    out the names written whole)."""
    for name in names(context):
        text = text.replace(name, " ")
    allowed = capitals(context)
    words = re.findall(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*", text)
    return [w for w in words if not w.islower() and w not in allowed]
