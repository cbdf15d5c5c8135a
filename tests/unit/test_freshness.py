"""Freshness per feature family: each applied event's families and event
time, the as-of times the Profile API shows, and the lag measured."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from agents.api import Asked, features_view
from agents.fold import Fold
from agents.freshness import FAMILIES, observe
from streams.metrics import Metrics
from streams.reference import ReferenceData
from streams.settings import Settings
from tests.support.harness import T0, Harness, policy

HOUR = 3_600_000


def asked() -> Asked:
    return Asked(T0 + HOUR, ReferenceData(Settings().reference_dir).current, ())


def track(n: int, user: str = "ana", **ids: str) -> tuple[str, dict[str, Any]]:
    body = {"type": "track", "event": "Product Viewed", "messageId": f"t{n}-{user}",
            "timestamp": T0 + n, "properties": {"product_id": "p-101"}}  # fmt: skip
    return "clickstream", {**body, **(ids or {"userId": user})}


def identify(n: int) -> tuple[str, dict[str, Any]]:
    return "clickstream", {"type": "identify", "userId": "ana", "messageId": f"i{n}",
                           "timestamp": T0 + n, "traits": {"first_name": "Ana"}}  # fmt: skip


def ping(n: int) -> tuple[str, dict[str, Any]]:
    return "location", {"userId": "ana", "messageId": f"l{n}", "timestamp": T0 + n,
                        "lat": 52.52, "lon": 13.40}  # fmt: skip


def test_each_family_is_as_of_the_latest_event_applied_to_it() -> None:
    harness = Harness(2)
    harness.send(identify(10), track(20), track(5))  # a late view moves nothing back
    view = features_view(harness.profile("ana"), asked())
    assert view["as_of"] == {"traits": T0 + 10, "session": T0 + 20, "windows": T0 + 20,
                             "location": None, "taste": None}  # fmt: skip
    harness.send(ping(30))
    view = features_view(harness.profile("ana"), asked())
    assert view["as_of"] == {"traits": T0 + 10, "session": T0 + 30, "windows": T0 + 30,
                             "location": T0 + 30, "taste": None}  # fmt: skip
    assert view["features"]["windows"]["24h"]["events"] == 3  # the features as before


def test_a_merged_profile_brings_its_as_of_times() -> None:
    harness = Harness(2)
    harness.send(track(50, anonymousId="anon-1"))
    harness.send(identify(10))
    harness.send(("clickstream", {"type": "identify", "anonymousId": "anon-1", "userId": "ana",
                                  "messageId": "login", "timestamp": T0 + 40}))  # fmt: skip
    as_of = features_view(harness.profile("ana"), asked())["as_of"]
    assert as_of == {
        "traits": T0 + 40,
        "session": T0 + 50,
        "windows": T0 + 50,
        "location": None,
        "taste": None,
    }


def test_only_applied_events_are_measured_once_each_family() -> None:
    harness = Harness(2)
    fold = Fold(harness.load, policy())
    events: list[dict[str, Any]] = []
    for source, body in (identify(1), track(2), ping(3)):
        harness.send((source, body))
    for kind, ts, event_id in (("track", T0 + 9, "t2-ana"), ("page", T0 + 7, "new")):
        events.append({"v": 1, "id": event_id, "kind": kind, "user": "ana", "ts": ts,
                       "at": T0 + 10, "name": "/", "props": {}})  # fmt: skip
    for event in events:
        fold.apply(event)
    assert fold.duplicates == 1  # t2-ana was applied by the harness already
    assert fold.fresh == [("session", T0 + 7), ("windows", T0 + 7)]


def test_each_lag_is_observed_under_its_family_and_none_is_negative() -> None:
    metrics = Metrics(CollectorRegistry())
    observe(metrics.feature_freshness, [("traits", 1000), ("windows", 1500), ("windows", 9000)],
            written_at=3000)  # fmt: skip
    registry = metrics.registry

    def value(name: str, family: str) -> float | None:
        return registry.get_sample_value(name, {"family": family})

    assert value("kairos_feature_freshness_seconds_count", "traits") == 1
    assert value("kairos_feature_freshness_seconds_sum", "traits") == 2.0
    assert value("kairos_feature_freshness_seconds_count", "windows") == 2
    assert value("kairos_feature_freshness_seconds_sum", "windows") == 1.5  # 1.5 s and 0
    assert set(FAMILIES) == {"traits", "session", "windows", "location", "taste"}
