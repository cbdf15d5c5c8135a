"""Event time: clock skew, the partition's watermark, timers on event time, stale offers."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import orjson

from agents.clock import Clock, clock_key, clock_partition
from agents.delivery import OfferDelivery
from agents.features import window
from agents.fold import Fold
from agents.moment_types import MOMENT_TYPES, stale
from agents.worker import create_app
from streams.codecs import now_ms
from streams.events import decode
from streams.reference import load_reference
from streams.settings import Settings
from tests.support.harness import Harness, policy

MINUTE = 60_000
HOUR = 60 * MINUTE
FLATIRON = load_reference().stores["s-flatiron"]


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


def test_segment_corrects_the_device_clock_by_sent_at_and_received_at() -> None:
    # The phone's clock is five hours fast (its zone is right, its time is not).
    body = {"type": "screen", "name": "Cart", "userId": "u-1001",
            "originalTimestamp": "2026-11-21T17:05:00.5-05:00",
            "sentAt": "2026-11-21T17:05:02-05:00",
            "receivedAt": "2026-11-21T17:05:03Z"}  # fmt: skip
    event = decode("clickstream", orjson.dumps(body), ms("2026-11-21T17:05:04Z"))
    assert event["ts"] == ms("2026-11-21T17:05:01.5Z")  # receivedAt - (sentAt - original)
    # A raw SDK payload carries the device's time as "timestamp": corrected the same way.
    raw = {**body, "timestamp": body.pop("originalTimestamp")}
    assert decode("clickstream", orjson.dumps(raw))["ts"] == ms("2026-11-21T17:05:01.5Z")
    # Without receivedAt, "timestamp" is taken as it is.
    del raw["receivedAt"]
    assert decode("clickstream", orjson.dumps(raw))["ts"] == ms("2026-11-21T22:05:00.5Z")


def test_a_time_far_ahead_is_no_reason_to_refuse_an_event() -> None:
    body = {"type": "page", "userId": "u", "timestamp": "2027-01-01T00:00:00Z"}
    event = decode("clickstream", orjson.dumps(body), ms("2026-11-21T17:05:00Z"))
    assert event["ts"] == ms("2027-01-01T00:00:00Z")  # ingest takes it at its arrival


def screen_then_checkout(h: Harness, skewed: dict[str, Any]) -> None:
    """The reported case: a skewed screen, then an alias, a checkout, and a view
    from the second device the alias tied to the same person."""
    at = "2026-11-21T17:0{}:00Z".format
    page = {"type": "page", "name": "/", "userId": "u-1001", "messageId": "p1"}
    alias = {"type": "alias", "previousId": "a-tablet", "userId": "u-1001", "messageId": "al"}
    checkout = {"type": "track", "event": "Checkout Started", "userId": "u-1001",
                "messageId": "c1"}  # fmt: skip
    view = {"type": "track", "event": "Product Viewed", "anonymousId": "a-tablet",
            "messageId": "v2",
            "properties": {"product_id": "p-101", "category": "running"}}  # fmt: skip
    for minute, body in [(1, page), (5, skewed), (6, alias), (7, checkout), (8, view)]:
        stamped = body if body["type"] == "screen" else {**body, "timestamp": at(minute)}
        h.send(("clickstream", stamped), arrived=ms(at(minute)) + 1000)


def test_a_skewed_screen_leaves_the_checkout_and_the_second_device_in_the_windows() -> None:
    skewed = {
        "type": "screen",
        "name": "Cart",
        "userId": "u-1001",
        "messageId": "s1",
        "timestamp": "2026-11-21T17:05:00.5-05:00",
    }  # 22:05 UTC, five hours ahead
    for body in (skewed, {**skewed, "sentAt": "2026-11-21T17:05:01-05:00",
                          "receivedAt": "2026-11-21T17:05:01Z"}):  # fmt: skip
        h = Harness()
        screen_then_checkout(h, body)
        assert h.dead == [] and h.router_dead == 0 and h.late == 0
        assert h.future == (0 if "receivedAt" in body else 1)  # else taken at its arrival
        profile = h.profile("u-1001")
        applied = [tuple(entry.split("|")[1::2]) for entry in profile["recent"]]
        assert applied == [("page", "/"), ("screen", "Cart"), ("alias", ""),
                           ("track", "Checkout Started"), ("track", "Product Viewed")]  # fmt: skip
        assert profile["views"][-1][1] == "p-101" and "a-tablet" in profile["ids"]
        assert window(profile, "15m", ms("2026-11-21T17:09:00Z"))["events"] == 4
        assert max(c.newest for c in h.clocks.values()) < ms("2026-11-21T17:10:00Z")


def test_one_persons_fast_clock_does_not_make_another_persons_order_late() -> None:
    h = Harness(partitions=1)
    now = ms("2026-11-21T17:00:00Z")
    ahead = {"type": "page", "userId": "fast", "timestamp": now + 5 * HOUR, "messageId": "f"}
    order = {"type": "order", "userId": "olga", "order_id": "o-1", "total": 30.0,
             "timestamp": now + MINUTE, "messageId": "o"}  # fmt: skip
    h.send(("clickstream", ahead), arrived=now)
    h.send(("crm", order), arrived=now + MINUTE)
    assert h.future == 1 and h.dead == []
    assert h.profile("olga")["orders"] == [1, 30.0, now + MINUTE]
    assert h.clocks[0].newest == now + MINUTE  # the fast clock did not move it


def test_a_late_event_updates_the_cart_but_not_the_windows_and_is_counted() -> None:
    h = Harness(partitions=1)
    now = ms("2026-11-21T17:00:00Z")
    first = {"type": "page", "userId": "a", "timestamp": now, "messageId": "a1"}
    late = {"type": "track", "event": "Product Added", "userId": "b", "messageId": "b1",
            "timestamp": now - HOUR, "properties": {"product_id": "p-101"}}  # fmt: skip
    h.send(("clickstream", first), arrived=now)
    h.send(("clickstream", late), arrived=now + 1000)
    assert h.late == 1 and h.dead == []
    assert h.profile("b")["cart"] == {"p-101": [1, now - HOUR]}
    assert window(h.profile("b"), "24h", now)["events"] == 0


def test_a_segment_order_completed_counts_as_an_order() -> None:
    h = Harness()
    now = ms("2026-11-21T17:00:00Z")
    h.send(("clickstream", {"type": "track", "event": "Order Completed", "userId": "u",
                            "timestamp": now, "messageId": "oc",
                            "properties": {"order_id": "o-9", "revenue": 42.5}}))  # fmt: skip
    assert h.profile("u")["orders"] == [1, 42.5, now]


def test_the_clock_is_stored_per_partition_and_read_back() -> None:
    clock = Clock.read(None)
    clock.observe({"kind": "page", "user": "u", "ts": 5_000, "at": 7_000})
    clock.observe({"kind": "absorb", "user": "u", "ts": 9_000, "at": 9_000})  # not its own time
    assert clock.moved and Clock.read(clock.encoded()) == Clock(5_000, 7_000)
    assert clock.watermark(1_000) == 4_000 and Clock().watermark(1_000) == 0
    assert clock_partition(clock_key(3)) == 3 and clock_partition(b"u3") is None
    assert clock_key(0) < b"\x00due:" < b"u"  # read by neither the timer scan nor the sweep


def test_timers_wait_for_the_watermark_and_a_quiet_partition_falls_back_to_the_wall() -> None:
    clock = Clock(newest=10 * HOUR, heard_at=20 * HOUR)
    lateness, idle = 5 * MINUTE, MINUTE
    # Events still arriving: the timers are judged at the watermark.
    assert clock.timer_time(20 * HOUR + 30_000, lateness, idle, 0) == 10 * HOUR - lateness
    # Quiet for the idle time: at the wall clock less the lateness, no further.
    assert clock.timer_time(20 * HOUR + idle, lateness, idle, 0) == 20 * HOUR + idle - lateness
    # Silence is counted only from when this worker took the partition.
    assert clock.timer_time(21 * HOUR, lateness, idle, 21 * HOUR - 1) == 10 * HOUR - lateness


def run_ticks(fold: Fold, timers: set[tuple[int, str, str]], event_time: int, wall: int) -> None:
    for due, rule, user in sorted(timers):
        if due <= event_time:
            timers.discard((due, rule, user))
            fold.fire(rule, user, event_time, wall)


def test_a_replayed_backlog_judges_each_cart_with_the_events_that_followed_it() -> None:
    rules = policy()
    store: dict[str, Any] = {}
    clock, timers = Clock(), set()
    wall = ms("2026-11-21T17:00:00Z")
    t = wall - 3 * HOUR  # the backlog is three hours old
    add = {"v": 1, "kind": "track", "name": "Product Added", "props": {"product_id": "p-101"}}

    def bundle(*events: dict[str, Any]) -> Fold:
        fold = Fold(store.get, rules, clock)
        for event in events:
            fold.apply({**event, "at": wall})
        store.update(fold.profiles)
        timers.update(fold.timers)
        return fold

    bundle(
        {**add, "id": "c1", "user": "olga", "ts": t}, {**add, "id": "c2", "user": "cara", "ts": t}
    )
    settings = Settings()
    lateness, idle = rules.allowed_lateness_ms, rules.timer_idle_ms
    # A tick between the carts and the order: by the wall clock both carts are
    # long due; by event time neither is.
    tick = Fold(store.get, rules, clock)
    run_ticks(tick, timers, clock.timer_time(wall, lateness, idle, wall - HOUR), wall)
    assert tick.moments == [] and len(timers) == 2
    bundle({"v": 1, "id": "o1", "kind": "order", "user": "olga", "ts": t + 10 * MINUTE,
            "props": {"order_id": "o1", "total": 10.0, "items": []}})  # fmt: skip
    # The backlog done, the partition goes quiet: its timers fire by the wall clock.
    later = wall + int(settings.timer_idle_s * 1000)
    tick = Fold(store.get, rules, clock)
    run_ticks(tick, timers, clock.timer_time(later, lateness, idle, wall - HOUR), later)
    assert [(m["user"], m["type"]) for _e, m in tick.moments] == [("cara", "cart_abandoned")]
    [(_event, moment)] = tick.moments
    assert "suppressed" not in moment  # 2.5 h old: within a cart's max age


def test_a_moment_detected_past_its_types_max_age_is_suppressed_as_stale() -> None:
    max_age = MOMENT_TYPES["store_entry"].max_age_ms
    ping = {"type": "location", "userId": "sam", "lat": FLATIRON.lat, "lon": FLATIRON.lon}
    view = {"type": "track", "event": "Product Viewed", "userId": "sam",
            "properties": {"product_id": "p-101", "category": "running"}}  # fmt: skip
    for arrival_delay, expected in ((0, None), (max_age + MINUTE, "stale")):
        h = Harness()
        t = ms("2026-11-21T17:00:00Z")
        h.send(("clickstream", {**view, "timestamp": t, "messageId": "v"}),
               ("location", {**ping, "timestamp": t + MINUTE, "messageId": "p"}),
               arrived=t + MINUTE + arrival_delay)  # fmt: skip
        [moment] = h.moments
        assert (moment["type"], moment.get("suppressed")) == ("store_entry", expected)
        offered = [held[0] for held in h.profile("sam")["offers"]]
        assert bool(offered) == (expected is None)  # a stale one is no offer, nor a holdout


def test_every_moment_type_declares_a_max_age_longer_than_its_timers_can_be_late() -> None:
    def most(name: str) -> float:
        return next(m.le for m in Settings.model_fields[name].metadata if hasattr(m, "le"))

    worst = int((most("allowed_lateness_s") + most("timer_idle_s")) * 1000)
    for kind in MOMENT_TYPES.values():
        assert kind.max_age_ms > 0
        if kind.timer is not None:
            assert kind.max_age_ms > worst, kind.name
    moment = {"type": "cart_abandoned", "event_ts": 0}
    assert stale(moment, 7 * HOUR) and not stale(moment, HOUR)
    assert not stale({"type": "cart_abandoned"}, 7 * HOUR)  # no time: not judged here


def test_a_moment_the_offers_stage_reads_past_its_max_age_gets_no_offer() -> None:
    rt = create_app(Settings(store="memory://"))
    stage = OfferDelivery(rt)
    lane = SimpleNamespace(delivered_earlier=lambda offset: False, knows=lambda moment: False)
    old = {"id": "m-1", "type": "store_entry", "user": "u", "store_id": "s-flatiron",
           "event_ts": now_ms() - MOMENT_TYPES["store_entry"].max_age_ms - MINUTE,
           "trigger_id": "p"}  # fmt: skip
    record = SimpleNamespace(topic="moments", partition=0, offset=5, value=orjson.dumps(old))
    item = stage.item_for(record, lane)  # type: ignore[arg-type]
    assert (item.moment_id, item.note, item.generation) == ("m-1", "stale", None)
    suppressed = rt.metrics.moments_suppressed.labels("store_entry", "stale")
    assert suppressed._value.get() == 1


def test_an_unreadable_clock_starts_again_rather_than_stopping_the_partition() -> None:
    assert Clock.read(b"not json") == Clock() and Clock.read(b'{"a": 1}') == Clock()
