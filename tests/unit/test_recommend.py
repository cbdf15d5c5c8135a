"""The recommendations view: the catalog nearest the taste, each with its reason."""

from __future__ import annotations

from datetime import UTC, time

from agents.api import Asked, recommendations_view
from agents.sendtime import Quiet
from tests.unit.test_taste_ranking import REF, catalog_vectors, viewing

HOUR = 3_600_000


def test_the_nearest_products_come_scored_with_why() -> None:
    vectors = catalog_vectors()
    profile = viewing(vectors, (90 * HOUR, "p-501"))
    body = recommendations_view(profile, Asked(100 * HOUR, REF, (), 2, vectors))
    assert body["k"] == 2 and body["taste_as_of"] == 90 * HOUR
    first, second = body["recommendations"]
    assert first["product_id"] == "p-501" and first["reason"] == "viewed"
    assert first["score"] > second["score"]
    assert second == {"product_id": "p-303", "name": "Wool beanie", "category": "apparel",
                      "score": second["score"], "reason": "similar", "like": "p-501"}  # fmt: skip
    # No consent traits: push only, as for anyone who never said otherwise;
    # too little history for a usual hour: the time asked about.
    assert body["channel"] == {"channel": "push", "reason": "only", "scores": {"push": 0.06}}
    assert body["next_send_time"] == 100 * HOUR


def test_the_next_send_time_waits_for_the_end_of_quiet_hours() -> None:
    vectors = catalog_vectors()
    profile = viewing(vectors, (90 * HOUR, "p-501"))
    profile["traits"]["email_opt_in"] = [True, 90 * HOUR]
    night = (Quiet(time(21), time(8), UTC),)
    body = recommendations_view(profile, Asked(100 * HOUR, REF, (), 2, vectors, night))
    assert body["next_send_time"] == 104 * HOUR  # 04:00 UTC is quiet until 08:00
    assert body["channel"]["channel"] == "push" and body["channel"]["reason"] == "prior"
    assert set(body["channel"]["scores"]) == {"push", "email"}


def test_without_a_taste_the_recent_views_come_newest_first_unscored() -> None:
    vectors = catalog_vectors()
    profile = viewing(vectors, (90 * HOUR, "p-501"), (95 * HOUR, "p-101"))
    del profile["taste"]
    body = recommendations_view(profile, Asked(100 * HOUR, REF, (), 5, vectors))
    assert [(r["product_id"], r["score"], r["reason"]) for r in body["recommendations"]] == [
        ("p-101", None, "viewed"), ("p-501", None, "viewed"),
    ]  # fmt: skip
    assert body["taste_as_of"] is None
