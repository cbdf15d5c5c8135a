"""What a customer wrote back to an offer, read as data, never as instructions.

A reply (the feedback action ``replied``, streams/events.py) is free text:
"not shoes, I need a rain jacket". None of it ever reaches a prompt.
:func:`sanitised` keeps it printable, on one line and at most
:data:`MAX_TEXT` characters, or drops it whole, with a reason, when it reads
as instructions to the model, or holds contact details, personal data or
codes (the guardrails' screens, models/guardrails.py, and a few of its own).
:func:`extract` then finds, in what was kept, the catalog's own words: its
categories and its product names (streams/reference.py), each as a
preference or an exclusion. Only those, as catalog ids, go on to the
context (agents/replies.py).

The extractor is a few rules, not a parser. Each clause (split at
``. , ; ! ?`` and at "but", "instead", "rather") is read left to right: a
negation ("not", "no", "no more", "don't want", "stop sending", "never",
"without", "hate") makes the catalog words after it exclusions, a wish ("I
need", "want", "looking for", "prefer", "like", "love", "show me") makes
them preferences, and a later trigger in the clause takes over; a wish
right after a negation stays negated ("don't want", "not interested in").
After a negated clause, "but" or "instead" starts a wish ("not shoes but a
rain jacket"). A catalog word is a category ("coffee"), a product's whole
name or its last words ("rain jacket", "jacket", "shoes": the head noun),
with simple plurals (-s, -es, -ies) on both sides; the longest match wins,
so "running shoes" is the product, not the category running.

What it cannot do: synonyms or other words for a product ("sneakers",
"trainers", "boots" when the catalog says "shoes" and "flats"), misspellings,
words before their trigger ("shoes? no thanks"), conditions or quantities
("no shoes unless they are waterproof", "two jackets"), double negation,
irony, and languages other than English. What it does not find derives
nothing: the reply is still kept and shown, just not acted on.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

from models.context import short_text
from models.guardrails import SCREENS
from streams.reference import Reference

# Characters kept of a reply (the event may carry more; streams/events.py
# refuses more than MAX_REPLY_CHARS there).
MAX_TEXT = 160
# Preferences and exclusions one reply can derive.
MAX_TERMS = 8
EXCLUDE, PREFER = "exclude", "prefer"
CATEGORY, PRODUCT = "category", "product"
# Why a reply's text is dropped: a bounded set of metric label values.
DROPPED = ("instructions", "contact", "personal_data", "code", "empty")

_INSTRUCTIONS = re.compile(
    r"\b(?:system|assistant|user|developer)\s*:|\byou are now\b|\bact as\b|\bpretend\b"
    r"|\broleplay\b|\bforget (?:all|everything|previous|prior|your)\b|\bnew rules?\b"
    r"|\beveryone\b|\bprevious\b|\babove\b|\bcommand\b|\bexecute\b|\bsay\b|\bwrite\b"
    r"|\brespond\b|\boutput\b|\bprint\b",
    re.IGNORECASE,
)
# Text from which nothing is taken: (reason, pattern), first match names it.
_SCREENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("instructions", _INSTRUCTIONS),
    *((("instructions" if r == "prompt_echo" else r), p) for r, p in SCREENS
      if r in ("prompt_echo", "contact", "personal_data")),
    # A code, an amount, a percentage: nothing a taste is said with.
    ("code", re.compile(r"[%$€£¥¢]|\d")),
)  # fmt: skip


def cleaned(text: str) -> str:
    """The printable characters of ``text``, on one line, spaces collapsed."""
    return short_text(text.replace("\u2019", "'"), len(text)) or ""


def sanitised(text: str) -> tuple[str | None, str | None]:
    """``(kept text, None)``, cut to :data:`MAX_TEXT`, or ``(None, reason)``."""
    kept = cleaned(text)
    if not kept:
        return None, "empty"
    for reason, pattern in _SCREENS:
        if pattern.search(kept):
            return None, reason
    return kept[:MAX_TEXT].rstrip(), None


@dataclass(frozen=True)
class Term:
    """One thing a reply said: ``action`` (exclude, prefer) a category or product by id."""

    action: str
    kind: str
    id: str


_NEGATIONS = frozenset({
    "not", "no", "never", "don't", "doesn't", "didn't", "won't", "without", "stop", "hate",
    "dislike", "enough", "nor",
})  # fmt: skip
_WISHES = frozenset({
    "need", "want", "wanted", "looking", "prefer", "like", "love", "interested", "show",
    "after", "fancy", "wish",
})  # fmt: skip
# Words a negation may be separated from its wish by ("don't really want").
_FILLERS = frozenset({"really", "longer", "even", "actually", "at", "all"})
_CONTRASTS = ("but", "instead", "rather")
_CLAUSES = re.compile(r"[.,;!?]+|\b(" + "|".join(_CONTRASTS) + r")\b")


def words(text: str) -> list[str]:
    """Lower-case words, "dont" read as "don't"."""
    found = re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower().replace("\u2019", "'"))
    return ["don't" if w == "dont" else w for w in found]


def stem(word: str) -> str:
    """One form for a word and its plural: "shoes" and "shoe", "hoodies" and
    "hoodie", "accessories" and "accessory" each come out the same."""
    if word.endswith("ies"):
        word = word[:-3] + "i"
    elif word.endswith("es"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us")) and len(word) > 3:
        word = word[:-1]
    if word.endswith("e") and len(word) > 2:
        return word[:-1]
    return word[:-1] + "i" if word.endswith("y") and len(word) > 2 else word


Vocabulary = dict[tuple[str, ...], tuple[tuple[str, str], ...]]
# Each live Reference's vocabulary and its longest phrase, by id: building
# them reads the whole catalog, too slow for every reply. A Reference is never
# changed, only replaced (streams/reference.py), and is unhashable (its
# dicts), so it is keyed by id and its entry dropped when it is collected,
# before the id can be reused.
_VOCABULARIES: dict[int, tuple[Vocabulary, int]] = {}


def vocabulary(reference: Reference) -> Vocabulary:
    """Catalog phrase -> what it names: a category, or the products whose name
    is the phrase or ends with it (a lone last word only if it is a plain word)."""
    return _cached(reference)[0]


def _cached(reference: Reference) -> tuple[Vocabulary, int]:
    key = id(reference)
    entry = _VOCABULARIES.get(key)
    if entry is None:
        vocab = _vocabulary(reference)
        entry = _VOCABULARIES[key] = vocab, max((len(phrase) for phrase in vocab), default=0)
        weakref.finalize(reference, _VOCABULARIES.pop, key, None)
    return entry


def _vocabulary(reference: Reference) -> Vocabulary:
    found: dict[tuple[str, ...], set[tuple[str, str]]] = {}
    for product in reference.products.values():
        name = [stem(w) for w in words(product.name)]
        for n in range(1, len(name) + 1):
            tail = tuple(name[-n:])
            if n == len(name) or n > 1 or (tail[0].isalpha() and len(tail[0]) > 1):
                found.setdefault(tail, set()).add((PRODUCT, product.id))
    categories = {p.category for p in reference.products.values()}
    categories.update(c for store in reference.stores.values() for c in store.categories)
    for category in categories:
        if phrase := tuple(stem(w) for w in words(category)):
            found[phrase] = {(CATEGORY, category)}  # a category is broader than a product
    return {phrase: tuple(sorted(named)) for phrase, named in found.items()}


def extract(text: str, reference: Reference) -> list[Term]:
    """The preferences and exclusions ``text`` (already sanitised) states, in
    order, at most :data:`MAX_TERMS`."""
    vocab, longest = _cached(reference)
    terms: list[Term] = []
    mode: str | None = None
    for clause, contrast in _clauses(text):
        mode = PREFER if contrast and mode == EXCLUDE else None
        for action, named in _scan(words(clause), vocab, longest, mode):
            mode = action
            terms += [Term(action, kind, key) for kind, key in named]
    return list(dict.fromkeys(terms))[:MAX_TERMS]


def _clauses(text: str) -> Iterator[tuple[str, bool]]:
    """Each clause, and whether a contrast ("but", "instead") opened it."""
    contrast, start = False, 0
    for match in _CLAUSES.finditer(text.lower()):
        yield text[start : match.start()], contrast
        contrast, start = match.group(1) is not None, match.end()
    yield text[start:], contrast


def _scan(
    tokens: list[str], vocab: Vocabulary, longest: int, mode: str | None,
) -> Iterator[tuple[str, tuple[tuple[str, str], ...]]]:  # fmt: skip
    """(action, what is named) for each catalog phrase in a clause under a trigger."""
    stems = [stem(t) for t in tokens]
    at, negated_at = 0, -2
    while at < len(tokens):
        token = tokens[at]
        if token in _NEGATIONS:
            mode, negated_at = EXCLUDE, at
        elif token in _WISHES and not _right_after(tokens, negated_at, at):
            mode = PREFER
        elif mode is not None:
            for n in range(min(longest, len(tokens) - at), 0, -1):
                named = vocab.get(tuple(stems[at : at + n]))
                if named:
                    yield mode, named
                    at += n - 1
                    break
        at += 1


def _right_after(tokens: list[str], negated_at: int, at: int) -> bool:
    """Whether only fillers stand between the negation at ``negated_at`` and ``at``."""
    return negated_at >= 0 and all(t in _FILLERS for t in tokens[negated_at + 1 : at])
