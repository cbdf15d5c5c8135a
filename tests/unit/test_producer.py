"""The producer path: synthetic plans and JSON-lines files."""

from __future__ import annotations

import gzip
from pathlib import Path

from streams.producer import plan_file, route
from streams.reference import load_reference
from streams.synthetic import plan
from streams.traffic import Population

REF = load_reference()


def test_synthetic_plan_is_seeded_ordered_and_bounded() -> None:
    first = plan(REF, Population(10, 12, 5, 3))
    assert first == plan(REF, Population(10, 12, 5, 3))
    assert first != plan(REF, Population(10, 12, 5, 4))
    times = [p.at for p in first]
    assert times == sorted(times) and times[0] >= 0 and times[-1] < 12


def test_every_interested_shopper_browses_before_walking_in() -> None:
    planned = plan(REF, Population(20, 10, 0, 1))
    for user in {p.event["userId"] for p in planned if isinstance(p.event, dict)}:
        mine = [p for p in planned if isinstance(p.event, dict) and p.event.get("userId") == user]
        views = [p.at for p in mine if p.event.get("event") == "Product Viewed"]
        pings = [p for p in mine if p.source == "location"]
        assert len(pings) >= 2, "every shopper passes by a store, even in a short run"
        inside = pings[1].at
        assert all(at < inside for at in views)


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
