"""Context selection with a taste vector: the store's products nearest the
person's taste join their views, and ``context_used`` says why each is there."""

from __future__ import annotations

import asyncio

import numpy as np
from prometheus_client import CollectorRegistry

from agents.moment_types import fallback, select_context
from agents.offers import OfferWriter, write_offer
from agents.profile import apply_event, new_profile
from agents.rules import load_rules
from agents.taste import observe
from models.client import LLMTimeout
from models.context import SUGGESTED_KEY
from streams.metrics import Metrics
from streams.reference import ReferenceData, load_reference
from streams.settings import Settings
from streams.vectors import ProductVectors
from tests.support.vectors import hand_made, unit

REF = load_reference()
RULES = load_rules()
HOUR = 3600 * 1000
HALF = 14 * 24 * HOUR
# Flatiron carries running, outdoor and apparel; no home goods.
MOMENT = {"store_id": "s-flatiron", "event_ts": 100 * HOUR, "user": "u1", "type": "store_entry"}


def catalog_vectors() -> ProductVectors:
    """Each product on an axis of its own, but the wool beanie close to the throw blanket."""
    rows = {pid: unit(*([0.0] * (n + 2) + [1.0])) for n, pid in enumerate(REF.products)}
    rows["p-501"] = unit(1, 0)  # Linen throw blanket (home)
    rows["p-303"] = unit(0.9, 0.3)  # Wool beanie (apparel): warm and soft, like it
    return hand_made(rows)


def viewing(vectors: ProductVectors, *views: tuple[int, str]) -> dict:
    """A profile that viewed ``views`` (time, product), its taste folded from them."""
    profile = new_profile("u1")
    apply_event(profile, {"kind": "identify", "ts": 1, "traits": {"first_name": "Ana"}})
    for ts, pid in views:
        props = {"product_id": pid, "category": REF.products[pid].category}
        event = {"kind": "track", "name": "Product Viewed", "ts": ts, "props": props}
        apply_event(profile, event)  # type: ignore[arg-type]
        assert observe(profile, event, vectors, HALF)  # type: ignore[arg-type]
    return profile


def test_an_unviewed_product_like_the_taste_is_named_with_similar_in_context_used() -> None:
    vectors = catalog_vectors()
    profile = viewing(vectors, (99 * HOUR, "p-501"), (98 * HOUR, "p-501"))
    context = select_context(profile, MOMENT, REF, RULES.rule("store_entry"), vectors=vectors)
    assert context.products[0].id == "p-303"  # on Flatiron's shelves, like the blanket
    assert "similar:p-303" in context.used
    assert "view:p-303" not in context.used
    data = context.as_prompt_data()
    assert data[SUGGESTED_KEY] == ["Wool beanie"]
    assert "Wool beanie" not in data["recently_viewed"]
    # The template does not tell Ana she looked at it.
    draft = fallback(context, 10)
    assert "Wool beanie is here to try" in draft.message
    assert "you looked at" not in draft.message
    assert draft.product_id == "p-303"


def test_a_viewed_product_the_store_carries_still_comes_first() -> None:
    vectors = catalog_vectors()
    profile = viewing(vectors, (99 * HOUR, "p-501"), (97 * HOUR, "p-101"))
    context = select_context(profile, MOMENT, REF, RULES.rule("store_entry"), vectors=vectors)
    assert [p.id for p in context.products][:2] == ["p-101", "p-303"]
    assert context.used[-3:-1] == ("view:p-101", "similar:p-303")


def test_without_a_taste_vector_the_ranking_is_the_views_as_before() -> None:
    vectors = catalog_vectors()
    profile = viewing(vectors, (99 * HOUR, "p-501"), (97 * HOUR, "p-101"))
    del profile["taste"]
    with_vectors = select_context(profile, MOMENT, REF, RULES.rule("store_entry"), vectors=vectors)
    without = select_context(profile, MOMENT, REF, RULES.rule("store_entry"))
    assert [p.id for p in with_vectors.products] == [p.id for p in without.products]
    assert [p.id for p in without.products] == ["p-101", "p-501"]
    assert not any(u.startswith("similar:") for u in with_vectors.used)


def test_the_taste_of_a_win_back_picks_from_the_lapsed_store() -> None:
    vectors = catalog_vectors()
    profile = viewing(vectors, (99 * HOUR, "p-501"))
    moment = {**MOMENT, "type": "win_back"}
    context = select_context(profile, moment, REF, RULES.rule("win_back"), vectors=vectors)
    assert context.moment_type == "win_back"
    assert context.products[0].id == "p-303" and "similar:p-303" in context.used


def test_a_product_removed_from_the_vectors_is_not_suggested() -> None:
    vectors = catalog_vectors()
    profile = viewing(vectors, (99 * HOUR, "p-501"))
    vectors.remove("p-303")
    context = select_context(profile, MOMENT, REF, RULES.rule("store_entry"), vectors=vectors)
    assert "p-303" not in [p.id for p in context.products]
    assert np.isfinite([float(p.price) for p in context.products]).all()


class Unavailable:
    """A model client that never answers: the offer is the template's."""

    model = "none"

    async def chat(self, *args: object, **kwargs: object) -> None:
        raise LLMTimeout("no model here")


def test_an_offer_names_the_similar_product_and_says_why() -> None:
    settings = Settings()
    reference = ReferenceData(settings.reference_dir)
    reference.vectors = catalog_vectors()
    profile = viewing(reference.vectors, (99 * HOUR, "p-501"))
    moment = {**MOMENT, "id": "m-1", "profile": profile, "ingested_at": 0,
              "detected_at": 100 * HOUR, "trigger_id": "t"}  # fmt: skip
    writer = OfferWriter(settings, RULES, reference, Metrics(CollectorRegistry()))
    offer = asyncio.run(write_offer(writer, Unavailable(), moment))  # type: ignore[arg-type]
    assert offer["product_id"] == "p-303"
    assert "similar:p-303" in offer["context_used"]
    assert "you looked at" not in offer["message"]
