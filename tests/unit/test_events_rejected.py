"""What the event decoder refuses, and why: every bad input gets a reason a
person can read, and no input crashes it."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.errors import InvalidEvent
from streams.events import MAX_BYTES, decode
from tests.support.events import TS, TS_MS, enc


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
