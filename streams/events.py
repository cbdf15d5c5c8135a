"""Event schemas at the edge: raw bytes in, a normalized event or a reason out.

Producers send what they have: Segment Spec calls (track, page, screen,
identify, alias, group) on the clickstream topic, location pings, and CRM
trait updates. :func:`decode` turns one record's bytes into a normalized
event (a plain dict, cheap to serialize with orjson) or raises
:class:`InvalidEvent` with a code for metrics and a sentence for people.

Normalized event (schema version 1)::

    {"v": 1, "id": "<messageId>", "kind": "track", "user": "<userId or anonymousId>",
     "ts": <event time, epoch ms>, "name": "Product Viewed",
     "props": {...}, "traits": {...}}

Examples of accepted input::

    {"type": "track", "event": "Product Viewed", "userId": "u1",
     "timestamp": "2026-11-21T10:00:00Z", "properties": {"product_id": "p-101"}}
    {"type": "location", "userId": "u1", "lat": 40.7411, "lon": -73.9897,
     "accuracy_m": 12, "device": "ios", "timestamp": "2026-11-21T10:05:00Z"}
    {"type": "traits", "userId": "u1", "traits": {"loyalty_tier": "gold"},
     "timestamp": "2026-11-21T09:00:00Z"}
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson

SCHEMA_VERSION = 1
MAX_BYTES = 64 * 1024
MAX_ID_LENGTH = 256
# Event time must fall in this range (2001-09-09 .. 2286-11-20, epoch ms).
MIN_TS_MS = 1_000_000_000_000
MAX_TS_MS = 9_999_999_999_999

SEGMENT_TYPES = frozenset({"track", "page", "screen", "identify", "alias", "group"})
CRM_TYPES = frozenset({"traits"})


class InvalidEvent(ValueError):
    """An event kairos cannot take, with a short code and a readable reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def decode(source: str, raw: bytes | None, fallback_ts_ms: int | None = None) -> dict[str, Any]:
    """Decode one record from ``source`` ("clickstream", "location" or "crm")."""
    body = _parse_object(raw)
    if source == "clickstream":
        return _segment(body, fallback_ts_ms)
    if source == "location":
        return _location(body, fallback_ts_ms)
    if source == "crm":
        return _crm(body, fallback_ts_ms)
    raise InvalidEvent("unknown_source", f"no decoder for source {source!r}")


def _parse_object(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        raise InvalidEvent("empty", "record has no value")
    if len(raw) > MAX_BYTES:
        raise InvalidEvent("oversized", f"payload is {len(raw)} bytes; the limit is {MAX_BYTES}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(
            "not_utf8", f"payload is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent("invalid_json", f"payload is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidEvent("not_object", f"expected a JSON object, got {type(body).__name__}")
    return body


def _segment(body: dict[str, Any], fallback_ts_ms: int | None) -> dict[str, Any]:
    kind = _kind(body, SEGMENT_TYPES, "Segment")
    event = _base(body, kind, fallback_ts_ms)
    if kind == "track":
        name = body.get("event")
        if not isinstance(name, str) or not name.strip():
            raise InvalidEvent("missing_field", "track event has no 'event' name")
        event["name"] = name
    elif kind in ("page", "screen"):
        name = body.get("name")
        event["name"] = name if isinstance(name, str) else ""
    if kind == "identify":
        event["traits"] = _object(body, "traits") or _object(body.get("context") or {}, "traits")
    else:
        event["props"] = _object(body, "properties")
    return event


def _location(body: dict[str, Any], fallback_ts_ms: int | None) -> dict[str, Any]:
    kind = body.get("type", "location")
    if kind != "location":
        raise InvalidEvent("unknown_type", f"expected a location ping, got type {_short(kind)}")
    event = _base(body, "location", fallback_ts_ms)
    lat = _number(body, "lat", -90.0, 90.0)
    lon = _number(body, "lon", -180.0, 180.0)
    props: dict[str, Any] = {"lat": lat, "lon": lon}
    if body.get("accuracy_m") is not None:
        props["accuracy_m"] = _number(body, "accuracy_m", 0.0, 100_000.0)
    device = body.get("device")
    if device is not None:
        if not isinstance(device, str):
            raise InvalidEvent("wrong_type", "'device' must be a string")
        props["device"] = device[:64]
    event["props"] = props
    return event


def _crm(body: dict[str, Any], fallback_ts_ms: int | None) -> dict[str, Any]:
    kind = _kind(body, CRM_TYPES, "CRM")
    event = _base(body, kind, fallback_ts_ms)
    event["traits"] = _object(body, "traits")
    if not event["traits"]:
        raise InvalidEvent("missing_field", "traits event has no 'traits' object")
    return event


def _kind(body: dict[str, Any], allowed: frozenset[str], family: str) -> str:
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        raise InvalidEvent("unknown_type", f"unknown {family} event type {_short(kind)}")
    return kind


def _base(body: dict[str, Any], kind: str, fallback_ts_ms: int | None) -> dict[str, Any]:
    user = _identity(body)
    message_id = body.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise InvalidEvent("wrong_type", "'messageId' must be a string")
    return {
        "v": SCHEMA_VERSION,
        "id": message_id or "",
        "kind": kind,
        "user": user,
        "ts": _event_time(body, fallback_ts_ms),
    }


def _identity(body: dict[str, Any]) -> str:
    for field in ("userId", "anonymousId"):
        value = body.get(field)
        if value is None or value == "":
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise InvalidEvent("wrong_type", f"'{field}' must be a string")
        if len(value) > MAX_ID_LENGTH:
            raise InvalidEvent("wrong_type", f"'{field}' is longer than {MAX_ID_LENGTH} characters")
        return value
    raise InvalidEvent("missing_field", "event has neither 'userId' nor 'anonymousId'")


def _event_time(body: dict[str, Any], fallback_ts_ms: int | None) -> int:
    for field in ("timestamp", "originalTimestamp", "sentAt"):
        value = body.get(field)
        if value is not None:
            return _parse_time(field, value)
    if fallback_ts_ms is None:
        raise InvalidEvent("bad_timestamp", "event has no 'timestamp'")
    return fallback_ts_ms


def _parse_time(field: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidEvent("bad_timestamp", f"'{field}' must be an ISO-8601 string or epoch ms")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidEvent("bad_timestamp", f"'{field}' is not a finite number")
        ms = int(value)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            ms = int(parsed.timestamp() * 1000)
        except (ValueError, OverflowError, OSError):
            raise InvalidEvent(
                "bad_timestamp", f"'{field}' is not an ISO-8601 time: {value[:64]!r}"
            ) from None
    else:
        raise InvalidEvent("bad_timestamp", f"'{field}' must be an ISO-8601 string or epoch ms")
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise InvalidEvent("bad_timestamp", f"'{field}' is out of range: {value!r}")
    return ms


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _object(body: dict[str, Any], field: str) -> dict[str, Any]:
    value = body.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent("wrong_type", f"'{field}' must be an object")
    return value


def _number(body: dict[str, Any], field: str, low: float, high: float) -> float:
    value = body.get(field)
    if value is None:
        raise InvalidEvent("missing_field", f"location ping has no '{field}'")
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidEvent("wrong_type", f"'{field}' must be a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidEvent("out_of_range", f"'{field}' must be between {low:g} and {high:g}")
    return float(value)
