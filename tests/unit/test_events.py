"""Decoding at the edge: every input is an event or a reason."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import InvalidEvent
from streams.events import MAX_BYTES, decode


def enc(value: object) -> bytes:
    return orjson.dumps(value)


TS = "2026-11-21T10:00:00Z"
TS_MS = 1795255200000


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


@pytest.mark.parametrize(
    ("source", "raw", "code", "reason"),
    [
        ("clickstream", b"", "empty", "record has no value"),
        ("clickstream", b"x" * (MAX_BYTES + 1), "oversized", "payload is"),
        ("clickstream", b"\xff\xfe", "not_utf8", "payload is not UTF-8"),
        ("clickstream", b"{not json", "invalid_json", "payload is not valid JSON"),
        ("clickstream", b"[1, 2]", "not_object", "expected a JSON object, got list"),
        ("clickstream", enc({"type": "shout", "userId": "u"}), "unknown_type", "unknown Segment"),
        (
            "clickstream",
            enc({"type": "track", "userId": "u", "timestamp": TS}),
            "missing_field",
            "track event has no 'event' name",
        ),
        (
            "clickstream",
            enc({"type": "page", "timestamp": TS}),
            "missing_field",
            "event has neither 'userId' nor 'anonymousId'",
        ),
        ("clickstream", enc({"type": "page", "userId": ["u"]}), "wrong_type", "'userId' must be"),
        (
            "clickstream",
            enc({"type": "page", "userId": "u", "timestamp": "yesterday"}),
            "bad_timestamp",
            "'timestamp' is not an ISO-8601 time",
        ),
        (
            "clickstream",
            enc({"type": "page", "userId": "u", "timestamp": 12}),
            "bad_timestamp",
            "'timestamp' is out of range",
        ),
        (
            "clickstream",
            enc({"type": "page", "userId": "u", "timestamp": TS, "properties": 3}),
            "wrong_type",
            "'properties' must be an object",
        ),
        (
            "location",
            enc({"userId": "u", "lat": 91, "lon": 0, "timestamp": TS}),
            "out_of_range",
            "'lat' must be between",
        ),
        (
            "location",
            enc({"userId": "u", "lat": "40", "lon": 0, "timestamp": TS}),
            "wrong_type",
            "'lat' must be a number",
        ),
        (
            "crm",
            enc({"type": "traits", "userId": "u", "timestamp": TS}),
            "missing_field",
            "traits event has no 'traits' object",
        ),
        (
            "crm",
            enc({"type": "traits", "anonymousId": "a", "traits": {"x": 1}, "timestamp": TS}),
            "missing_field",
            "CRM traits record has no 'userId'",
        ),
        (
            "crm",
            enc({"type": "order", "userId": "u", "total": 5, "timestamp": TS}),
            "missing_field",
            "CRM order record has no 'order_id'",
        ),
        (
            "crm",
            enc({"type": "order", "userId": "u", "order_id": "o", "total": "5", "timestamp": TS}),
            "wrong_type",
            "'total' must be a number",
        ),
        (
            "crm",
            enc(
                {
                    "type": "ticket",
                    "userId": "u",
                    "ticket_id": "t",
                    "status": "lost",
                    "timestamp": TS,
                }
            ),
            "wrong_value",
            "ticket 'status' must be one of",
        ),
        (
            "crm",
            enc({"type": "loyalty", "userId": "u", "tier": "gold", "points": 1.5, "timestamp": TS}),
            "wrong_type",
            "'points' must be an integer",
        ),
        ("crm", enc({"type": "refund", "userId": "u"}), "unknown_type", "unknown CRM event type"),
        (
            "crm",
            enc(
                {
                    "type": "traits",
                    "userId": "u",
                    "traits": {"a": 1},
                    "schema_version": 2,
                    "timestamp": TS,
                }
            ),
            "unsupported_version",
            "CRM traits record has schema_version 2; this worker reads 1",
        ),
        (
            "feedback",
            enc(
                {
                    "type": "feedback",
                    "action": "liked",
                    "offer_id": "o",
                    "userId": "u",
                    "timestamp": TS,
                }
            ),
            "wrong_value",
            "feedback 'action' must be one of",
        ),
        (
            "clickstream",
            enc({"type": "page", "userId": "\x00due:1:cart_abandoned:u", "timestamp": TS}),
            "wrong_value",
            "'userId' contains non-printable characters",
        ),
        (
            "clickstream",
            enc({"type": "alias", "userId": "u", "previousId": "a\nb", "timestamp": TS}),
            "wrong_value",
            "'previousId' contains non-printable characters",
        ),
        (
            "feedback",
            enc({"type": "feedback", "action": [], "offer_id": "o", "userId": "u"}),
            "wrong_value",
            "feedback 'action' must be one of",
        ),
        (
            "feedback",
            enc({"type": "feedback", "action": "opened", "userId": "u", "timestamp": TS}),
            "missing_field",
            "feedback event has no 'offer_id'",
        ),
        (
            "clickstream",
            enc({"type": "alias", "userId": "u", "timestamp": TS}),
            "missing_field",
            "alias event has no 'previousId'",
        ),
        (
            "clickstream",
            enc({"type": "page", "userId": "u", "context": [], "timestamp": TS}),
            "wrong_type",
            "'context' must be an object",
        ),
        (
            "clickstream",
            enc({"type": "page", "userId": "u", "timestamp": "2027-01-01T00:00:00Z"}),
            "bad_timestamp",
            "event time is",
        ),
        (
            "clickstream",
            enc({"type": "page", "userId": "u", "timestamp": True}),
            "bad_timestamp",
            "'timestamp' must be an ISO-8601 string or epoch ms",
        ),
        ("clickstream", b'{"type": "page", "userId": "\xff"}', "not_utf8", "payload is not UTF-8"),
    ],
)
def test_bad_input_has_a_readable_reason(source: str, raw: bytes, code: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(source, raw, record_ts_ms=TS_MS)
    assert caught.value.code == code
    assert caught.value.reason.startswith(reason), caught.value.reason


@pytest.mark.parametrize("depth", [40, 2000])
def test_deep_nesting_is_rejected_not_a_crash(depth: int) -> None:
    raw = b'{"type": "page", "userId": "u", "properties": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(InvalidEvent) as caught:
        decode("clickstream", raw)
    assert caught.value.code == "too_deep"
    assert caught.value.reason == "payload nests deeper than 32 levels"


def test_many_brackets_that_do_not_nest_deeply_are_fine() -> None:
    props = {f"k{n}": [n] for n in range(100)}
    event = decode(
        "clickstream", enc({"type": "page", "userId": "u", "properties": props}), record_ts_ms=TS_MS
    )
    assert event["props"]["k99"] == [99]


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


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
segmentish = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            [
                "track",
                "page",
                "identify",
                "alias",
                "group",
                "location",
                "traits",
                "order",
                "ticket",
                "loyalty",
                "feedback",
                "x",
            ]
        )
        | json_values,
        "anonymousId": st.text(max_size=5) | json_values,
        "previousId": st.text(max_size=5) | json_values,
        "messageId": st.text(max_size=5) | json_values,
        "originalTimestamp": st.sampled_from([TS, "x"]) | json_values,
        "sentAt": st.sampled_from([TS, "x"]) | json_values,
        "context": json_values,
        "order_id": st.text(max_size=5) | json_values,
        "total": st.floats() | json_values,
        "items": json_values,
        "status": st.sampled_from(["open", "closed", "x"]) | json_values,
        "ticket_id": json_values,
        "tier": json_values,
        "points": json_values,
        "action": st.sampled_from(["opened", "redeemed", "x"]) | json_values,
        "offer_id": json_values,
        "schema_version": json_values,
        "userId": st.text(max_size=5) | json_values,
        "event": st.text(max_size=5) | json_values,
        "timestamp": st.sampled_from([TS, "2026-13-01", ""])
        | st.integers(-(2**63), 2**63 - 1)
        | json_values,
        "lat": st.floats() | json_values,
        "lon": st.floats() | json_values,
        "properties": json_values,
        "traits": json_values,
    },
)


@settings(max_examples=500, deadline=None)
@given(
    source=st.sampled_from(["clickstream", "location", "crm", "feedback"]),
    raw=st.binary(max_size=200)
    | segmentish.map(lambda d: orjson.dumps(d, option=orjson.OPT_NON_STR_KEYS)),
)
def test_no_input_crashes_the_decoder(source: str, raw: bytes) -> None:
    try:
        event = decode(source, raw, record_ts_ms=TS_MS)
    except InvalidEvent as exc:
        assert exc.code and exc.reason
    else:
        assert isinstance(event["user"], str) and event["user"]
        assert isinstance(event["ts"], int)
