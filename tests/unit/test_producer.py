"""The producer path: synthetic plans and JSON-lines files."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from streams.codecs import dumps
from streams.errors import InvalidEvent
from streams.events import decode
from streams.reference import load_reference
from streams.tools.producer import plan_file, plan_traits, route
from streams.tools.synthetic import plan
from streams.tools.traffic import Population

REF = load_reference()


def test_synthetic_plan_is_seeded_ordered_and_bounded() -> None:
    first = plan(REF, Population(10, 12, 5, 3))
    assert first == plan(REF, Population(10, 12, 5, 3))
    assert first != plan(REF, Population(10, 12, 5, 4))
    times = [p.at for p in first]
    assert times == sorted(times) and times[0] >= 0 and times[-1] < 12


def person(event: dict[str, Any]) -> str:
    """The shopper an event belongs to, whether it was sent anonymously or not."""
    return event.get("userId") or "u-" + event["anonymousId"].removeprefix("anon-")


def test_every_interested_shopper_browses_before_walking_in() -> None:
    planned = plan(REF, Population(20, 10, 0, 1))
    for user in {person(p.event) for p in planned if isinstance(p.event, dict)}:
        mine = [p for p in planned if isinstance(p.event, dict) and person(p.event) == user]
        views = [p.at for p in mine if p.event.get("event") == "Product Viewed"]
        pings = [p for p in mine if p.source == "location"]
        assert len(pings) >= 2, "every shopper passes by a store, even in a short run"
        inside = pings[1].at
        assert all(at < inside for at in views)


def test_shoppers_log_in_late_and_the_crm_speaks_too() -> None:
    planned = plan(REF, Population(40, 60, 0, 7))
    events = [p.event for p in planned if isinstance(p.event, dict)]
    anonymous_views = [
        e for e in events if e.get("event") == "Product Viewed" and "userId" not in e
    ]
    assert anonymous_views, "some shoppers browse before logging in"
    for view in anonymous_views:
        [login] = [e for e in events if e["type"] == "identify"
                   and e["anonymousId"] == view["anonymousId"]]  # fmt: skip
        assert login["userId"] == person(view)
    crm = {e["type"] for p in planned if p.source == "crm" for e in [p.event]}
    assert crm == {"order", "loyalty", "ticket"}
    for item in planned:  # all of it is what kairos reads, bar the deliberate junk
        if isinstance(item.event, dict) and ("userId" in item.event or "anonymousId" in item.event):
            body = dumps({**item.event, "timestamp": "2026-11-21T10:00:00Z"})
            if item.event.get("type") != "track" or "event" in item.event:
                assert decode(item.source, body)["kind"] in ("track", "page", "identify",
                                                             "location", "order", "loyalty",
                                                             "ticket")  # fmt: skip


def test_background_traffic_includes_malformed_records() -> None:
    planned = plan(REF, Population(5, 60, 20, 7))
    malformed = [p for p in planned if isinstance(p.event, bytes)] + [
        p for p in planned if isinstance(p.event, dict) and "userId" not in p.event
    ]
    assert malformed


def test_file_lines_keep_their_bytes_and_route_by_type(tmp_path: Path) -> None:
    lines = [
        b'{"type":"track","event":"Product Viewed","userId":"u1"}',
        b'{"type":"location","userId":"u1","lat":1,"lon":2}',
        b'{"type":"traits","userId":"u1","traits":{"a":1}}',
        b"not json at all",
        b'{"type":["odd"]}',
    ]
    path = tmp_path / "export.jsonl.gz"
    with gzip.open(path, "wb") as out:
        out.write(b"\n".join(lines[:2]) + b"\n\n" + b"\n".join(lines[2:]) + b"\n")
    planned = list(plan_file(path, rate=10))
    assert [p.event for p in planned] == lines
    assert [p.source for p in planned] == [
        "clickstream",
        "location",
        "crm",
        "clickstream",
        "clickstream",
    ]
    assert [p.at for p in planned] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert {p.source for p in plan_file(path, source="crm")} == {"crm"}
    assert route(b"{}") == "clickstream"


def test_traits_load_from_csv_and_json_lines(tmp_path: Path) -> None:
    csv_path = tmp_path / "traits.csv"
    csv_path.write_text(
        "user_id,first_name,loyalty_points,vip,favorite_category\n"
        "u1,Alice,1200,true,running\n"
        "u2,Bruno,,false,\n"
        ",Nobody,3,,\n"
    )
    planned = list(plan_traits(csv_path, "2026-11-20T00:00:00Z"))
    assert {p.source for p in planned} == {"crm"}
    first, second, nobody = (p.event for p in planned)
    assert first == {"type": "traits", "userId": "u1", "timestamp": "2026-11-20T00:00:00Z",
                     "traits": {"first_name": "Alice", "loyalty_points": 1200, "vip": True,
                                "favorite_category": "running"}}  # fmt: skip
    assert second["traits"] == {"first_name": "Bruno", "vip": False}  # empty cells left out
    assert decode("crm", dumps(first))["traits"]["loyalty_points"] == 1200
    with pytest.raises(InvalidEvent, match="CRM traits record has no 'userId'"):
        decode("crm", dumps(nobody))  # still sent: kairos dead-letters it with the reason

    jsonl = tmp_path / "traits.jsonl.gz"
    with gzip.open(jsonl, "wb") as out:
        nested_line = {
            "userId": "u3",
            "traits": {"tier": "gold"},
            "timestamp": "2026-01-01T00:00:00Z",
        }
        out.write(dumps(nested_line) + b'\n{"user_id": "u4", "tier": "silver"}\n\nnot json\n')
    nested, flat, junk = (p.event for p in plan_traits(jsonl, "2026-11-20T00:00:00Z"))
    assert nested == {"type": "traits", "userId": "u3", "traits": {"tier": "gold"},
                      "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    assert flat["traits"] == {"tier": "silver"} and flat["userId"] == "u4"
    assert junk == b"not json"
