"""Attribution: what followed each moment, for the offers and for the holdout.

A moment that led to an offer (group ``offer``) or was held back as the
rule's control (group ``holdout``) is remembered in the person's profile
with its prompt variant (agents/profile.py, ``offers``). Later events join it
there, in the context agent, in order with the person's other events:

- feedback (delivered, opened, clicked, redeemed, dismissed) joins its offer
  by offer id, if it comes within ``KAIROS_ATTRIBUTION_WINDOW_S`` of the
  moment; each action counts once per offer;
- an order (a CRM order, or a Segment ``Order Completed``) converts every
  remembered moment of either group in the window before it, once each.

Feedback for an offer the profile does not remember, or later than the
window, is counted as unattributed. Each join is one record on
``kairos.outcomes``; with the moments (kairos.internal.moments) they are
what `kairos report` reads, and the metrics count the same joins.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agents.channels import count_feedback
from agents.moments import moment_of
from agents.profile import MAX_OUTCOMES, Profile, bounded_put
from streams.domain import Event, Moment

OFFER, HOLDOUT = "offer", "holdout"
CONVERTED = "converted"


def group_of(moment: Moment) -> str | None:
    """``offer``, ``holdout``, or None for a moment policy held back otherwise."""
    reason = moment.get("suppressed")
    if reason is None:
        return OFFER
    return HOLDOUT if reason == HOLDOUT else None


def remembered(profile: Profile) -> Iterator[tuple[str, str, int, str | None, str]]:
    """(offer id, moment type, moment time, variant, group) of each remembered moment.

    Entries written before variants and groups were kept are offers.
    """
    for held in profile["offers"]:
        offer, moment, ts = held[0], held[1], held[2]
        yield (
            offer,
            moment,
            ts,
            held[3] if len(held) > 3 else None,
            (held[4] if len(held) > 4 else OFFER),
        )


def is_order(event: Event) -> bool:
    return event["kind"] == "order" or (
        event["kind"] == "track" and event.get("name") == "Order Completed"
    )


def join(profile: Profile, event: Event, window_ms: int) -> tuple[list[dict[str, Any]], str | None]:
    """The outcome records ``event`` adds, and why feedback was not attributed (or None).

    Called before the event is applied to the profile, so feedback sees the
    actions its offer had before it.
    """
    if event["kind"] == "feedback":
        return _feedback(profile, event, window_ms)
    if is_order(event):
        return _conversions(profile, event["ts"], window_ms), None
    return [], None


def _feedback(
    profile: Profile, event: Event, window_ms: int
) -> tuple[list[dict[str, Any]], str | None]:
    offer_id = (event.get("props") or {}).get("offer_id")
    match = next((held for held in remembered(profile) if held[0] == offer_id), None)
    if match is None or match[4] != OFFER:
        return [], "unknown_offer"
    if not 0 <= event["ts"] - match[2] <= window_ms:
        return [], "outside_window"
    if event["name"] in profile["outcomes"].get(match[0], {}):
        return [], None  # this action was counted when it first came
    count_feedback(profile, match[0], event)  # the channel's history
    return [_record(profile, match, event["name"], event["ts"])], None


def _conversions(profile: Profile, ts: int, window_ms: int) -> list[dict[str, Any]]:
    out = []
    for held in remembered(profile):
        if not 0 <= ts - held[2] <= window_ms:
            continue
        outcome = profile["outcomes"].get(held[0])
        if outcome is None:
            outcome = {}
            bounded_put(profile["outcomes"], held[0], outcome, MAX_OUTCOMES)
        if CONVERTED not in outcome:
            outcome[CONVERTED] = ts
            out.append(_record(profile, held, CONVERTED, ts))
    return out


def _record(
    profile: Profile, held: tuple[str, str, int, str | None, str], outcome: str, ts: int
) -> dict[str, Any]:
    offer, moment, moment_ts, variant, group = held
    return {
        "moment_id": moment_of(offer),
        "offer_id": offer,
        "user": profile["user"],
        "moment": moment,
        "variant": variant,
        "group": group,
        "outcome": outcome,
        "moment_ts": moment_ts,
        "ts": ts,
    }
