"""Feedback and orders joined to the moments before them, and the report's sums."""

from __future__ import annotations

from typing import Any

from agents.attribution import HOLDOUT, OFFER
from agents.moments import moment_id, offer_id
from agents.rules import in_holdout
from models.prompts import variant_for
from streams.reference import load_reference
from streams.tools.report import table, tally
from tests.support.harness import T0, Harness, policy

FLATIRON = load_reference().stores["s-flatiron"]
POLICY = policy()
PCT = POLICY.rules.holdout_pct("store_entry")
ATTRIBUTION_MS = POLICY.attribution_ms
HOUR = 3600 * 1000
# Event times in the past of the records' time (T0): ingest rejects the future.
BASE = T0 - 20 * 24 * HOUR


def people(held_out: bool, count: int) -> list[str]:
    return [u for u in (f"p{n}" for n in range(1000))
            if in_holdout(u, "store_entry", PCT) == held_out][:count]  # fmt: skip


def visit(user: str, at: int) -> list[tuple[str, dict[str, Any]]]:
    """A product view, then a ping inside Flatiron: a store-entry moment."""
    return [
        ("clickstream", {"type": "track", "event": "Product Viewed", "userId": user,
                         "messageId": f"v-{user}-{at}", "timestamp": at - 60_000,
                         "properties": {"product_id": "p-101", "category": "running"}}),
        ("location", {"type": "location", "userId": user, "lat": FLATIRON.lat + 0.0001,
                      "lon": FLATIRON.lon, "messageId": f"ping-{user}-{at}", "timestamp": at}),
    ]  # fmt: skip


def feedback(user: str, offer: str, action: str, at: int, n: int = 0) -> tuple[str, dict]:
    return ("feedback", {"type": "feedback", "userId": user, "offer_id": offer, "action": action,
                         "messageId": f"f-{user}-{action}-{at}-{n}", "timestamp": at})  # fmt: skip


def order(user: str, at: int) -> tuple[str, dict]:
    return ("crm", {"type": "order", "userId": user, "order_id": f"o-{user}-{at}", "total": 40.0,
                    "messageId": f"order-{user}-{at}", "timestamp": at})  # fmt: skip


def the_offer(user: str, at: int) -> str:
    return offer_id(moment_id("store_entry", user, "s-flatiron", f"ping-{user}-{at}"))


def test_feedback_joins_its_offer_once_per_action_within_the_window() -> None:
    [user] = people(held_out=False, count=1)
    h = Harness()
    h.send(*visit(user, BASE))
    offer = the_offer(user, BASE)
    [moment] = h.moments
    assert "suppressed" not in moment and moment["variant"] == variant_for(user, "store_entry")
    h.send(
        feedback(user, offer, "delivered", BASE + 1_000),
        feedback(user, offer, "opened", BASE + 60_000),
        feedback(user, offer, "opened", BASE + 90_000, n=1),  # opened again: counted once
        feedback(user, "o-someone-else", "opened", BASE + 60_000, n=2),
        feedback(user, offer, "redeemed", BASE + ATTRIBUTION_MS + 1),  # too late
    )
    assert h.router_dead == 0
    assert [(o["outcome"], o["offer_id"], o["group"]) for o in h.outcomes] == [
        ("delivered", offer, OFFER),
        ("opened", offer, OFFER),
    ]
    assert h.outcomes[0]["variant"] == moment["variant"]
    assert h.unattributed == {"unknown_offer": 1, "outside_window": 1}


def test_an_order_converts_the_moments_in_its_window_in_both_groups() -> None:
    [treated] = people(held_out=False, count=1)
    [control] = people(held_out=True, count=1)
    h = Harness()
    h.send(*visit(treated, BASE), *visit(control, BASE))
    assert {m["user"]: m.get("suppressed") for m in h.moments} == {treated: None, control: HOLDOUT}
    h.send(order(treated, BASE - HOUR))  # before the moment: not a conversion
    assert h.outcomes == []
    h.send(
        order(treated, BASE + HOUR), order(treated, BASE + 2 * HOUR), order(control, BASE + HOUR)
    )
    assert sorted((o["user"], o["group"], o["outcome"]) for o in h.outcomes) == sorted(
        [(treated, OFFER, "converted"), (control, HOLDOUT, "converted")]
    )
    # Feedback naming the holdout's would-be offer joins nothing: none was sent.
    h.send(feedback(control, the_offer(control, BASE), "opened", BASE + HOUR))
    assert h.unattributed == {"unknown_offer": 1}
    # A second visit, a week and a day later (past the cooldown): an order
    # just past its window converts nothing.
    again = BASE + 8 * 24 * HOUR
    h.send(*visit(treated, again))
    assert len(h.moments) == 3
    h.send(order(treated, again + ATTRIBUTION_MS + 1))
    assert h.router_dead == 0
    assert len(h.outcomes) == 2


def test_a_segment_order_completed_converts_too() -> None:
    [user] = people(held_out=False, count=1)
    h = Harness()
    h.send(*visit(user, BASE))
    h.send(("clickstream", {"type": "track", "event": "Order Completed", "userId": user,
                            "messageId": "oc-1", "timestamp": BASE + HOUR,
                            "properties": {"order_id": "x1", "total": 12.0}}))  # fmt: skip
    assert [o["outcome"] for o in h.outcomes] == ["converted"]


def moment(n: int, variant: str, group: str) -> dict[str, Any]:
    record: dict[str, Any] = {"id": f"m-{n}", "type": "store_entry", "variant": variant}
    if group == HOLDOUT:
        record["suppressed"] = HOLDOUT
    return record


def outcome(n: int, variant: str, group: str, name: str) -> dict[str, Any]:
    return {"moment_id": f"m-{n}", "offer_id": f"o-{n}", "moment": "store_entry",
            "variant": variant, "group": group, "outcome": name}  # fmt: skip


def test_tally_counts_each_moment_and_outcome_once_and_computes_uplift() -> None:
    moments = [moment(n, "a", OFFER) for n in range(10)]
    moments += [moment(n, "b", OFFER) for n in range(10, 15)]
    moments += [moment(n, "a", HOLDOUT) for n in range(15, 20)]
    moments += [moment(0, "a", OFFER), {"id": "m-99", "type": "store_entry", "variant": "a",
                                        "suppressed": "quiet_hours"}]  # fmt: skip
    outcomes = [outcome(n, "a", OFFER, "delivered") for n in range(10)]
    outcomes += [outcome(n, "a", OFFER, "opened") for n in range(6)]
    outcomes += [outcome(n, "a", OFFER, "opened") for n in range(2)]  # redelivered
    outcomes += [outcome(n, "a", OFFER, "redeemed") for n in range(3)]
    outcomes += [outcome(n, "a", OFFER, "converted") for n in range(4)]
    outcomes += [outcome(n, "b", OFFER, "opened") for n in range(10, 11)]
    outcomes += [outcome(n, "a", HOLDOUT, "converted") for n in range(15, 16)]
    a, b = tally(moments, outcomes)

    assert (a.variant, a.sent, a.delivered, a.opened, a.redeemed, a.converted) == (
        "a",
        10,
        10,
        6,
        3,
        4,
    )
    assert (a.open_rate, a.redemption_rate, a.conversion_rate) == (0.6, 0.3, 0.4)
    assert (a.held_out, a.holdout_converted, a.holdout_conversion_rate) == (5, 1, 0.2)
    assert a.uplift == 0.2
    assert (b.variant, b.sent, b.opened, b.converted, b.conversion_rate, b.uplift) == (
        "b", 5, 1, 0, 0.0, -0.2)  # fmt: skip
    text = table([a, b])
    assert "60.0%" in text and "+20.0 pt" in text and "-20.0 pt" in text
