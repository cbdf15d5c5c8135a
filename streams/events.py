"""Event schemas at the edge: raw bytes in, a normalized event or a reason out.

Producers send what they have (docs/EVENTS.md documents every schema with
an example):

- clickstream: Segment Spec calls as they are: track, page, screen,
  identify, alias, group;
- crm: ``traits``, ``order``, ``ticket`` and ``loyalty`` records;
- location: pings with lat/lon, accuracy and device;
- feedback: what happened to an offer (delivered, opened, clicked,
  redeemed, dismissed), or what the customer wrote back (replied, with its
  ``text``).

:func:`decode` turns one record's bytes into a normalized event (a plain
dict, cheap to serialize with orjson) or raises :class:`InvalidEvent` with a
short code for metrics and a sentence for people. It never raises anything
else, whatever the bytes (tests/unit/test_events.py holds it to that).

Normalized event, schema version 1::

    {"v": 1, "id": "<messageId>", "kind": "track", "user": "<userId, else anonymousId>",
     "ts": <event time, epoch ms>, "name": "Product Viewed",
     "props": {...}, "traits": {...},
     "anon": "<anonymousId, when userId is set too>",     # identity links
     "previous": "<previousId>",                           # alias only
     "tz": "<context.timezone>"}                           # Segment calls that name one

Event time, as Segment computes ``timestamp``: with ``sentAt`` and
``receivedAt``, the device's time (``originalTimestamp``, else ``timestamp``)
corrected for the device's clock skew, ``receivedAt - (sentAt - device
time)``; else the producer's ``timestamp``; else ``originalTimestamp``
corrected by ``sentAt`` and the record's time; else the record's time. An
event stamped far ahead of its arrival is not refused here: ingest takes it
at its arrival time (agents/ingest.py), since a wrong clock does not make a
record less of an event.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import orjson

from streams.errors import InvalidEvent

SCHEMA_VERSION = 1
MAX_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_ID_LENGTH = 256
MAX_ORDER_ITEMS = 100
# Event time must fall in this range (2001-09-09 .. 2286-11-20, epoch ms).
MIN_TS_MS = 1_000_000_000_000
MAX_TS_MS = 9_999_999_999_999

SEGMENT_TYPES = frozenset({"track", "page", "screen", "identify", "alias", "group"})
CRM_TYPES = frozenset({"traits", "order", "ticket", "loyalty"})
FEEDBACK_ACTIONS = frozenset({"delivered", "opened", "clicked", "redeemed", "dismissed", "replied"})
# A reply's text, as the customer typed it, is at most this long (the profile
# keeps less of it: agents/replies.py).
MAX_REPLY_CHARS = 1000
TICKET_STATUSES = frozenset({"open", "pending", "solved", "closed"})
SOURCES = ("clickstream", "crm", "location", "feedback")
MAX_ZONE_CHARS = 64  # IANA's longest name has 30
# A Segment context.timezone: an IANA name ("America/New_York") or an offset
# from UTC ("+05:30", "-0800"). Whether the name is a known zone is
# agents/sendtime.py's to find out, once, when it is used.
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]{0,31}(?:/[A-Za-z0-9_+\-]{1,32}){0,2}|[+-]\d\d:?\d\d")


def decode(source: str, raw: bytes | None, record_ts_ms: int | None = None) -> dict[str, Any]:
    """Decode one record read from ``source``; ``record_ts_ms`` is the record's own time."""
    body = _parse_object(raw)
    if source == "clickstream":
        return _segment(body, record_ts_ms)
    if source == "location":
        return _location(body, record_ts_ms)
    if source == "crm":
        return _crm(body, record_ts_ms)
    if source == "feedback":
        return _feedback(body, record_ts_ms)
    raise InvalidEvent("unknown_source", f"no decoder for source {source!r}")


def _parse_object(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        raise InvalidEvent("empty", "record has no value")
    if len(raw) > MAX_BYTES:
        raise InvalidEvent("oversized", f"payload is {len(raw)} bytes; the limit is {MAX_BYTES}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise InvalidEvent(
                "not_utf8", f"payload is not UTF-8 text ({bad.reason} at byte {bad.start})"
            ) from None
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise InvalidEvent(
                "too_deep", f"payload nests deeper than {MAX_DEPTH} levels"
            ) from None
        raise InvalidEvent("invalid_json", f"payload is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidEvent("not_object", f"expected a JSON object, got {type(body).__name__}")
    # Fewer brackets than the limit cannot nest deeper than it: skip the walk.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _depth(body) > MAX_DEPTH:
        raise InvalidEvent("too_deep", f"payload nests deeper than {MAX_DEPTH} levels")
    return body


def _depth(value: Any) -> int:
    deepest, level = 0, [(value, 1)]
    while level:
        node, depth = level.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node
        level.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return deepest


def _segment(body: dict[str, Any], record_ts: int | None) -> dict[str, Any]:
    kind = _kind(body, SEGMENT_TYPES, "Segment")
    event = _base(body, kind, record_ts)
    zone = _object(body, "context").get("timezone")
    if isinstance(zone, str) and len(zone) <= MAX_ZONE_CHARS and _ZONE.fullmatch(zone):
        event["tz"] = zone  # anything else is not a zone: the event stands without it
    if kind == "track":
        name = body.get("event")
        if not isinstance(name, str) or not name.strip():
            raise InvalidEvent("missing_field", "track event has no 'event' name")
        event["name"] = name[:MAX_ID_LENGTH]
        event["props"] = _object(body, "properties")
    elif kind in ("page", "screen"):
        name = body.get("name")
        event["name"] = name[:MAX_ID_LENGTH] if isinstance(name, str) else ""
        event["props"] = _object(body, "properties")
    elif kind == "identify":
        event["traits"] = _object(body, "traits") or _object(body.get("context") or {}, "traits")
    elif kind == "alias":
        if not body.get("userId"):
            raise InvalidEvent("missing_field", "alias event has no 'userId'")
        event["previous"] = _need(body, "previousId", "alias event")
        _identity(body, "previousId")
    elif kind == "group":
        event["props"] = {"group_id": _need(body, "groupId", "group event")}
        event["traits"] = _object(body, "traits")
    return event


def _location(body: dict[str, Any], record_ts: int | None) -> dict[str, Any]:
    kind = body.get("type", "location")
    if kind != "location":
        raise InvalidEvent("unknown_type", f"expected a location ping, got type {_short(kind)}")
    _version(body, "location ping")
    event = _base(body, "location", record_ts)
    props: dict[str, Any] = {
        "lat": _number(body, "lat", -90.0, 90.0),
        "lon": _number(body, "lon", -180.0, 180.0),
    }
    if body.get("accuracy_m") is not None:
        props["accuracy_m"] = _number(body, "accuracy_m", 0.0, 100_000.0)
    device = _text(body, "device")
    if device is not None:
        props["device"] = device[:64]
    event["props"] = props
    return event


def _crm(body: dict[str, Any], record_ts: int | None) -> dict[str, Any]:
    kind = _kind(body, CRM_TYPES, "CRM")
    _version(body, f"CRM {kind} record")
    if not body.get("userId"):
        raise InvalidEvent("missing_field", f"CRM {kind} record has no 'userId'")
    event = _base(body, kind, record_ts)
    if kind == "traits":
        event["traits"] = _object(body, "traits")
        if not event["traits"]:
            raise InvalidEvent("missing_field", "traits event has no 'traits' object")
    elif kind == "order":
        event["props"] = {
            "order_id": _need(body, "order_id", "CRM order record"),
            "total": _number(body, "total", 0.0, 1e9),
            "currency": (_text(body, "currency") or "USD")[:8],
            "items": _order_items(body),
        }
    elif kind == "ticket":
        status = _need(body, "status", "CRM ticket record")
        if status not in TICKET_STATUSES:
            raise InvalidEvent(
                "wrong_value", f"ticket 'status' must be one of {sorted(TICKET_STATUSES)}"
            )
        event["props"] = {
            "ticket_id": _need(body, "ticket_id", "CRM ticket record"),
            "status": status,
        }
        for field in ("subject", "priority"):
            if (value := _text(body, field)) is not None:
                event["props"][field] = value[:200]
    else:  # loyalty
        tier = _need(body, "tier", "CRM loyalty record")
        points = body.get("points")
        if points is not None and (isinstance(points, bool) or not isinstance(points, int)):
            raise InvalidEvent("wrong_type", "'points' must be an integer")
        event["props"] = {"tier": tier[:32], "points": points}
    return event


def _order_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    items = body.get("items", [])
    if not isinstance(items, list):
        raise InvalidEvent("wrong_type", "'items' must be a list")
    if len(items) > MAX_ORDER_ITEMS:
        raise InvalidEvent(
            "too_many", f"order has {len(items)} items; the limit is {MAX_ORDER_ITEMS}"
        )
    out = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidEvent("wrong_type", "each of 'items' must be an object")
        quantity = item.get("quantity", 1)
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise InvalidEvent("wrong_type", "an item's 'quantity' must be a positive integer")
        out.append(
            {
                "product_id": _need(item, "product_id", "an order item"),
                "quantity": quantity,
            }
        )
    return out


def _feedback(body: dict[str, Any], record_ts: int | None) -> dict[str, Any]:
    if body.get("type", "feedback") != "feedback":
        raise InvalidEvent(
            "unknown_type", f"expected offer feedback, got type {_short(body['type'])}"
        )
    _version(body, "feedback event")
    event = _base(body, "feedback", record_ts)
    action = body.get("action")
    if not isinstance(action, str) or action not in FEEDBACK_ACTIONS:
        raise InvalidEvent(
            "wrong_value",
            f"feedback 'action' must be one of {sorted(FEEDBACK_ACTIONS)}, got {_short(action)}",
        )
    event["name"] = action
    event["props"] = {"offer_id": _need(body, "offer_id", "feedback event")}
    channel = _text(body, "channel")
    if channel is not None:
        event["props"]["channel"] = channel[:32]
    if action == "replied":
        event["props"]["text"] = _reply_text(body)
    return event


def _reply_text(body: dict[str, Any]) -> str:
    """A reply's text: a string of at most MAX_REPLY_CHARS, read as data later."""
    text = body.get("text")
    if text is None or (isinstance(text, str) and not text.strip()):
        raise InvalidEvent("missing_field", "replied feedback has no 'text'")
    if not isinstance(text, str):
        kind = type(text).__name__
        raise InvalidEvent("wrong_type", f"reply 'text' must be a string, got {kind}")
    if len(text) > MAX_REPLY_CHARS:
        raise InvalidEvent(
            "too_long", f"reply 'text' is {len(text)} characters; the limit is {MAX_REPLY_CHARS}"
        )
    return text


def _kind(body: dict[str, Any], allowed: frozenset[str], family: str) -> str:
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        raise InvalidEvent("unknown_type", f"unknown {family} event type {_short(kind)}")
    return kind


def _version(body: dict[str, Any], what: str) -> None:
    version = body.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise InvalidEvent(
            "unsupported_version",
            f"{what} has schema_version {_short(version)}; this worker reads {SCHEMA_VERSION}",
        )


def _base(body: dict[str, Any], kind: str, record_ts: int | None) -> dict[str, Any]:
    user_id = _identity(body, "userId")
    anonymous_id = _identity(body, "anonymousId")
    if not user_id and not anonymous_id:
        raise InvalidEvent("missing_field", "event has neither 'userId' nor 'anonymousId'")
    message_id = body.get("messageId")
    if message_id is not None and not isinstance(message_id, str):
        raise InvalidEvent("wrong_type", "'messageId' must be a string")
    if message_id and len(message_id) > MAX_ID_LENGTH:
        raise InvalidEvent("wrong_type", f"'messageId' is longer than {MAX_ID_LENGTH} characters")
    event: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "id": message_id or "",
        "kind": kind,
        "user": user_id or anonymous_id,
        "ts": _event_time(body, record_ts),
    }
    if user_id and anonymous_id and anonymous_id != user_id:
        event["anon"] = anonymous_id
    return event


def _identity(body: dict[str, Any], field: str) -> str | None:
    """A person's id: printable text (ids become state keys)."""
    value = _text(body, field)
    if value is not None and not value.isprintable():
        raise InvalidEvent("wrong_value", f"'{field}' contains non-printable characters")
    return value


def _need(body: dict[str, Any], field: str, what: str) -> str:
    """A required string field; ``what`` names the record that lacks it."""
    value = _text(body, field, required=what)
    assert value is not None
    return value


def _text(body: dict[str, Any], field: str, *, required: str = "") -> str | None:
    """A string field (numbers are taken as text); ``required`` names what lacks it."""
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise InvalidEvent("missing_field", f"{required} has no '{field}'")
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        value = str(value)  # numeric ids are common in CRM exports
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"'{field}' must be a string")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEvent("wrong_type", f"'{field}' is longer than {MAX_ID_LENGTH} characters")
    return value


def _event_time(body: dict[str, Any], record_ts: int | None) -> int:
    # Only the fields a rule uses are read: a stray one cannot spoil a good time.
    device = "originalTimestamp" if body.get("originalTimestamp") is not None else "timestamp"
    if all(body.get(f) is not None for f in (device, "sentAt", "receivedAt")):
        skew = _parse_time("sentAt", body["sentAt"]) - _parse_time(device, body[device])
        return _in_range("receivedAt", _parse_time("receivedAt", body["receivedAt"]) - skew)
    if body.get("timestamp") is not None:
        return _parse_time("timestamp", body["timestamp"])
    if body.get("originalTimestamp") is not None:
        ts = _parse_time("originalTimestamp", body["originalTimestamp"])
        if body.get("sentAt") is None or record_ts is None:
            return ts
        # The record's time stands in for receivedAt: shift by (record time - sentAt).
        return _in_range("sentAt", ts + record_ts - _parse_time("sentAt", body["sentAt"]))
    if body.get("sentAt") is not None:
        return _parse_time("sentAt", body["sentAt"])
    if record_ts is not None:
        return record_ts
    raise InvalidEvent("bad_timestamp", "event has no 'timestamp'")


def _in_range(field: str, ms: int) -> int:
    if not MIN_TS_MS <= ms <= MAX_TS_MS:
        raise InvalidEvent("bad_timestamp", f"event time corrected by '{field}' is out of range")
    return ms


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
        raise InvalidEvent("bad_timestamp", f"'{field}' is out of range: {_short(value)}")
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
        raise InvalidEvent("missing_field", f"event has no '{field}'")
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidEvent("wrong_type", f"'{field}' must be a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidEvent("out_of_range", f"'{field}' must be between {low:g} and {high:g}")
    return float(value)
