"""Decoding at the edge: every input is an event or a reason."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.events import MAX_BYTES, InvalidEvent, decode


def enc(value: object) -> bytes:
    return orjson.dumps(value)


TS = "2026-11-21T10:00:00Z"
TS_MS = 1795255200000


@pytest.mark.parametrize("kind", ["track", "page", "screen", "identify", "alias", "group"])
def test_segment_types(kind: str) -> None:
    body = {"type": kind, "userId": "u1", "timestamp": TS, "event": "Product Viewed"}
    event = decode("clickstream", enc(body))
    assert (event["kind"], event["user"], event["ts"]) == (kind, "u1", TS_MS)


def test_track_keeps_name_and_properties() -> None:
    body = {"type": "track", "event": "Product Viewed", "anonymousId": "a1", "timestamp": TS,
            "properties": {"product_id": "p-101"}, "messageId": "m1"}  # fmt: skip
    event = decode("clickstream", enc(body))
    assert event["name"] == "Product Viewed"
    assert event["props"] == {"product_id": "p-101"}
    assert (event["user"], event["id"]) == ("a1", "m1")


def test_identify_traits_and_location_and_crm() -> None:
    identify = decode("clickstream", enc({"type": "identify", "userId": "u1", "timestamp": TS,
                                          "traits": {"name": "Alice"}}))  # fmt: skip
    assert identify["traits"] == {"name": "Alice"}
    ping = decode("location", enc({"userId": "u1", "lat": 40.7, "lon": -73.9, "accuracy_m": 5,
                                   "device": "ios", "timestamp": TS}))  # fmt: skip
    assert ping["props"] == {"lat": 40.7, "lon": -73.9, "accuracy_m": 5.0, "device": "ios"}
    crm = decode("crm", enc({"type": "traits", "userId": "u1", "timestamp": TS,
                             "traits": {"loyalty_tier": "gold"}}))  # fmt: skip
    assert crm["traits"] == {"loyalty_tier": "gold"}


def test_missing_timestamp_falls_back_to_record_time() -> None:
    event = decode("clickstream", enc({"type": "page", "userId": "u1"}), fallback_ts_ms=TS_MS)
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
        ("clickstream", enc({"type": "track", "userId": "u", "timestamp": TS}), "missing_field",
         "track event has no 'event' name"),
        ("clickstream", enc({"type": "page", "timestamp": TS}), "missing_field",
         "event has neither 'userId' nor 'anonymousId'"),
        ("clickstream", enc({"type": "page", "userId": ["u"]}), "wrong_type", "'userId' must be"),
        ("clickstream", enc({"type": "page", "userId": "u", "timestamp": "yesterday"}),
         "bad_timestamp", "'timestamp' is not an ISO-8601 time"),
        ("clickstream", enc({"type": "page", "userId": "u", "timestamp": 12}), "bad_timestamp",
         "'timestamp' is out of range"),
        ("clickstream", enc({"type": "page", "userId": "u", "timestamp": TS, "properties": 3}),
         "wrong_type", "'properties' must be an object"),
        ("location", enc({"userId": "u", "lat": 91, "lon": 0, "timestamp": TS}), "out_of_range",
         "'lat' must be between"),
        ("location", enc({"userId": "u", "lat": "40", "lon": 0, "timestamp": TS}), "wrong_type",
         "'lat' must be a number"),
        ("crm", enc({"type": "traits", "userId": "u", "timestamp": TS}), "missing_field",
         "traits event has no 'traits' object"),
    ],
)  # fmt: skip
def test_bad_input_has_a_readable_reason(source: str, raw: bytes, code: str, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode(source, raw)
    assert caught.value.code == code
    assert caught.value.reason.startswith(reason), caught.value.reason


def test_deep_nesting_is_rejected_not_a_crash() -> None:
    raw = b'{"type": "page", "userId": "u", "properties": ' + b"[" * 2000 + b"]" * 2000 + b"}"
    with pytest.raises(InvalidEvent):
        decode("clickstream", raw)


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
        "type": st.sampled_from(["track", "page", "identify", "location", "traits", "x"])
        | json_values,
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


@settings(max_examples=300, deadline=None)
@given(
    source=st.sampled_from(["clickstream", "location", "crm"]),
    raw=st.binary(max_size=200)
    | segmentish.map(lambda d: orjson.dumps(d, option=orjson.OPT_NON_STR_KEYS)),
)
def test_no_input_crashes_the_decoder(source: str, raw: bytes) -> None:
    try:
        event = decode(source, raw, fallback_ts_ms=TS_MS)
    except InvalidEvent as exc:
        assert exc.code and exc.reason
    else:
        assert isinstance(event["user"], str) and event["user"]
        assert isinstance(event["ts"], int)
