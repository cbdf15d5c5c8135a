"""The products to show a person next, from their taste vector, for the
Profile API's ``recommendations`` view.

With a taste vector (agents/taste.py) and product vectors, the catalog
products nearest it turned toward the latest views (``intent_of``), each
scored by its cosine to that. A product the
person viewed lately is there ``"reason": "viewed"``; any other
``"reason": "similar"``, with ``"like"``: the product among their recent
views most like it. Without a taste, their recent views, newest first,
unscored, as the moments' context has always used them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.profile import Profile
from agents.taste import intent_of
from streams.reference import Reference
from streams.vectors import ProductVectors

DEFAULT_K = 5
MAX_K = 20


def recommend(
    profile: Profile, reference: Reference, vectors: ProductVectors | None, k: int
) -> list[dict[str, Any]]:
    """Up to ``k`` products for the person, best first."""
    viewed = list(dict.fromkeys(v[1] for v in reversed(profile.get("views") or [])))
    viewed = [pid for pid in viewed if pid in reference.products]
    taste = intent_of(profile, vectors) if vectors is not None else None
    if taste is None or vectors is None:
        return [_row(reference, pid, None, "viewed") for pid in viewed[:k]]
    nearest = vectors.nearest(taste, k, among=reference.products.keys())
    return [
        _row(reference, pid, cosine, "viewed")
        if pid in viewed
        else {**_row(reference, pid, cosine, "similar"), "like": _like(vectors, pid, viewed)}
        for pid, cosine in nearest
    ]


def _row(reference: Reference, pid: str, score: float | None, reason: str) -> dict[str, Any]:
    product = reference.products[pid]
    return {
        "product_id": pid,
        "name": product.name,
        "category": product.category,
        "score": None if score is None else round(score, 4),
        "reason": reason,
    }


def _like(vectors: ProductVectors, pid: str, viewed: list[str]) -> str | None:
    """The viewed product most like ``pid``, if any of them has a vector."""
    target = vectors.get(pid)
    if target is None:
        return None
    held = [(other, vectors.get(other)) for other in viewed]
    scored = [(float(np.dot(vec, target)), other) for other, vec in held if vec is not None]
    return max(scored)[1] if scored else None
