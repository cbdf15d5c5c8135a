"""What `kairos eval` measures per variant, and the table it prints.

Each moment, under one variant and model, gives a :class:`Judged`: what
production would have sent (the model's answer if it passed the
guardrails, else the template, with the reason) and the model's request.
:func:`score` sums them up:

- ``pass_rate``: moments whose model answer passed the guardrails;
- ``fallbacks``: the others, counted by reason code (the guardrails'
  ``offer_terms``, ``unknown_name``, ... and the client's ``timeout``,
  ``unavailable``, ...);
- ``message_chars``, ``store_related``, ``right_customer``: over the answers
  that passed, since a fallback's template is the same for every variant.
  ``store_related`` is the share naming a product of a category the store
  carries (streams/reference.py), of answers about a store that name a
  product; ``right_customer`` the share calling the customer by the first
  name in their profile, of answers for a customer with a known name;
- ``prompt_tokens``, ``completion_tokens`` (means) and ``latency`` p50/p99
  (the request, retries included) over the requests the model answered;
- ``score``: the share of moments whose answer passed, named the right
  customer and a product the store carries (where each applies). Rows are
  ranked by it, then by pass rate.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from models.context import ContextSlice
from streams.reference import Reference


@dataclass(frozen=True)
class Judged:
    """One moment under one variant."""

    context: ContextSlice
    passed: bool
    reason: str | None  # why it fell back; None if the model's answer passed
    headline: str
    message: str
    product_id: str | None
    prompt_tokens: int | None = None  # None: the model never answered
    completion_tokens: int | None = None
    latency_s: float | None = None


@dataclass(frozen=True)
class Row:
    variant: str
    model: str
    moments: int
    passed: int
    pass_rate: float | None
    fallbacks: dict[str, int]
    message_chars: float | None
    prompt_tokens: float | None
    completion_tokens: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    store_related: float | None
    right_customer: float | None
    score: float | None
    generations_per_s: float | None
    rank: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100), or None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def store_related(judged: Judged, reference: Reference) -> bool | None:
    """Does the answer's product belong to a category its store carries?
    None when the moment is not about a store or the answer names no product."""
    # The product as the context had it (the moment's own reference data, in eval).
    known = {p.id: p for p in judged.context.products}
    store = judged.context.store
    product = known.get(judged.product_id or "") or reference.products.get(judged.product_id or "")
    if store is None or judged.product_id is None:
        return None
    return product is not None and product.category in store.categories


def right_customer(judged: Judged) -> bool | None:
    """Does the answer call the customer by their first name? None if it is unknown."""
    name = judged.context.first_name
    if not name:
        return None
    return bool(re.search(rf"\b{re.escape(name)}\b", f"{judged.headline} {judged.message}"))


def score(
    variant: str, model: str, judged: Sequence[Judged], reference: Reference, wall_s: float
) -> Row:
    """One variant's row (``wall_s``: how long its generations took, start to end)."""
    passed = [j for j in judged if j.passed]
    related = [r for r in (store_related(j, reference) for j in passed) if r is not None]
    named = [r for r in (right_customer(j) for j in passed) if r is not None]
    good = sum(store_related(j, reference) is not False and right_customer(j) is not False
               for j in passed)  # fmt: skip
    answered = [j for j in judged if j.latency_s is not None]
    latencies = [j.latency_s * 1000 for j in answered if j.latency_s is not None]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return Row(
        variant=variant,
        model=model,
        moments=len(judged),
        passed=len(passed),
        pass_rate=_share(len(passed), len(judged)),
        fallbacks=dict(Counter(j.reason for j in judged if j.reason).most_common()),
        message_chars=_mean([len(j.message) for j in passed]),
        prompt_tokens=_mean([j.prompt_tokens for j in answered if j.prompt_tokens is not None]),
        completion_tokens=_mean(
            [j.completion_tokens for j in answered if j.completion_tokens is not None]
        ),
        latency_p50_ms=None if p50 is None else round(p50, 1),
        latency_p99_ms=None if p99 is None else round(p99, 1),
        store_related=_share(sum(related), len(related)),
        right_customer=_share(sum(named), len(named)),
        score=_share(good, len(judged)),
        generations_per_s=round(len(answered) / wall_s, 3) if wall_s > 0 and answered else None,
    )


def ranked(rows: Sequence[Row]) -> list[Row]:
    """Best first: by score, then pass rate; equal rows share a rank."""

    def key(row: Row) -> tuple[float, float]:
        return (row.score or 0.0, row.pass_rate or 0.0)

    order = sorted(rows, key=key, reverse=True)
    out: list[Row] = []
    for i, row in enumerate(order):
        same = i > 0 and key(order[i - 1]) == key(row)
        out.append(Row(**{**row.as_dict(), "rank": out[-1].rank if same else i + 1}))
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _reasons(fallbacks: dict[str, int]) -> str:
    return " ".join(f"{reason}:{n}" for reason, n in fallbacks.items()) or "-"


HEAD = ("rank", "variant", "model", "moments", "pass", "score", "store", "name", "msg chars",
        "tok in", "tok out", "p50 ms", "p99 ms", "gen/s", "fallbacks")  # fmt: skip


def table(rows: Sequence[Row]) -> str:
    """The terminal table, best variant first."""
    if not rows:
        return "no variants were run"
    body = [
        (str(r.rank), r.variant, r.model, str(r.moments), _pct(r.pass_rate), _pct(r.score),
         _pct(r.store_related), _pct(r.right_customer), _num(r.message_chars),
         _num(r.prompt_tokens), _num(r.completion_tokens), _num(r.latency_p50_ms),
         _num(r.latency_p99_ms), _num(r.generations_per_s, 2), _reasons(r.fallbacks))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in (HEAD, *body)) for i in range(len(HEAD))]
    left = {1, 2, len(HEAD) - 1}

    def fmt(line: tuple[str, ...]) -> str:
        cells = [cell.ljust(w) if i in left else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(line, widths, strict=True))]  # fmt: skip
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(HEAD), "  ".join("-" * w for w in widths), *map(fmt, body)])
