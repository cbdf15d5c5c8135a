"""Decoding at the edge: every input is an event or a reason."""

from __future__ import annotations

import pytest

from streams.events import decode
from tests.support.events import TS, TS_MS, enc


@pytest.mark.parametrize("kind", ["track", "page", "screen", "identify", "alias", "group"])
def test_segment_types(kind: str) -> None:
    body = {
        "type": kind,
        "userId": "u1",
        "timestamp": TS,
        "event": "Product Viewed",
        "previousId": "a1",
        "groupId": "g1",
    }
    event = decode("clickstream", enc(body))
    assert (event["kind"], event["user"], event["ts"]) == (kind, "u1", TS_MS)


def test_track_keeps_name_and_properties() -> None:
    body = {
        "type": "track",
        "event": "Product Viewed",
        "anonymousId": "a1",
        "timestamp": TS,
        "properties": {"product_id": "p-101"},
        "messageId": "m1",
    }
    event = decode("clickstream", enc(body))
    assert event["name"] == "Product Viewed"
    assert event["props"] == {"product_id": "p-101"}
    assert (event["user"], event["id"]) == ("a1", "m1")


def test_identify_traits_and_location_and_crm() -> None:
    identify = decode(
        "clickstream",
        enc({"type": "identify", "userId": "u1", "timestamp": TS, "traits": {"name": "Alice"}}),
    )
    assert identify["traits"] == {"name": "Alice"}
    ping = decode(
        "location",
        enc(
            {
                "userId": "u1",
                "lat": 40.7,
                "lon": -73.9,
                "accuracy_m": 5,
                "device": "ios",
                "timestamp": TS,
            }
        ),
    )
    assert ping["props"] == {"lat": 40.7, "lon": -73.9, "accuracy_m": 5.0, "device": "ios"}
    crm = decode(
        "crm",
        enc(
            {"type": "traits", "userId": "u1", "timestamp": TS, "traits": {"loyalty_tier": "gold"}}
        ),
    )
    assert crm["traits"] == {"loyalty_tier": "gold"}


def test_missing_timestamp_falls_back_to_record_time() -> None:
    event = decode("clickstream", enc({"type": "page", "userId": "u1"}), record_ts_ms=TS_MS)
    assert event["ts"] == TS_MS


def test_crm_orders_tickets_loyalty_and_feedback() -> None:
    order = decode(
        "crm",
        enc(
            {
                "type": "order",
                "userId": 42,
                "order_id": 1001,
                "total": 59.5,
                "items": [{"product_id": "p-101", "quantity": 2}],
                "timestamp": TS,
            }
        ),
    )
    assert (order["user"], order["kind"]) == ("42", "order")  # numeric CRM ids become text
    assert order["props"] == {
        "order_id": "1001",
        "total": 59.5,
        "currency": "USD",
        "items": [{"product_id": "p-101", "quantity": 2}],
    }
    ticket = decode(
        "crm",
        enc(
            {
                "type": "ticket",
                "userId": "u1",
                "ticket_id": "T-9",
                "status": "open",
                "subject": "late delivery",
                "timestamp": TS,
            }
        ),
    )
    assert ticket["props"] == {"ticket_id": "T-9", "status": "open", "subject": "late delivery"}
    loyalty = decode(
        "crm",
        enc({"type": "loyalty", "userId": "u1", "tier": "gold", "points": 1200, "timestamp": TS}),
    )
    assert loyalty["props"] == {"tier": "gold", "points": 1200}
    opened = decode(
        "feedback",
        enc(
            {
                "type": "feedback",
                "action": "opened",
                "offer_id": "o-1",
                "userId": "u1",
                "channel": "push",
                "timestamp": TS,
            }
        ),
    )
    assert (opened["kind"], opened["name"], opened["props"]) == (
        "feedback",
        "opened",
        {"offer_id": "o-1", "channel": "push"},
    )


def test_identity_fields_for_merges() -> None:
    both = decode(
        "clickstream",
        enc({"type": "track", "event": "X", "userId": "u1", "anonymousId": "a1", "timestamp": TS}),
    )
    assert (both["user"], both["anon"]) == ("u1", "a1")
    alias = decode(
        "clickstream", enc({"type": "alias", "userId": "u1", "previousId": "a1", "timestamp": TS})
    )
    assert (alias["user"], alias["previous"]) == ("u1", "a1")
    group = decode(
        "clickstream",
        enc(
            {
                "type": "group",
                "userId": "u1",
                "groupId": "acme",
                "traits": {"plan": "pro"},
                "timestamp": TS,
            }
        ),
    )
    assert group["props"] == {"group_id": "acme"}


def test_event_time_corrects_device_clock_skew() -> None:
    # The device's clock is 10 minutes fast: it says it sent at 10:10, the
    # record arrived at 10:00:05, so the event happened at 09:55:05.
    body = {
        "type": "page",
        "userId": "u1",
        "originalTimestamp": "2026-11-21T10:05:00Z",
        "sentAt": "2026-11-21T10:10:00Z",
    }
    event = decode("clickstream", enc(body), record_ts_ms=TS_MS + 5000)
    assert event["ts"] == TS_MS - 5 * 60_000 + 5000
    # "timestamp", when given, is the event time as it is.
    event = decode("clickstream", enc({**body, "timestamp": TS}), record_ts_ms=TS_MS + 5000)
    assert event["ts"] == TS_MS
