"""Next best send time: the person's usual hour, the bounds, quiet hours, time zones."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from agents.clock import Clock
from agents.fold import Fold, Policy
from agents.moment_types import MOMENT_TYPES
from agents.moment_types.base import TIMER_SLACK_MS
from agents.profile import new_profile
from agents.rules import Rules, in_holdout
from agents.sendtime import Quiet, hour_activity, next_send_time, usual_hours, zone_of
from streams.domain import Profile
from streams.events import decode
from streams.settings import Settings
from tests.support.harness import policy

HOUR = 3_600_000
MINUTE = 60_000
NIGHT = Quiet(time(21), time(8))  # across midnight


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


def active(at: dict[str, int], days: int = 5, tz: str | None = None) -> Profile:
    """A person with ``events`` in the UTC hour starting at each ``at`` time
    ("HH:MM" of 2026-11-20), on each of the ``days`` days before."""
    profile = new_profile("u1")
    tiles = []
    for day in range(days):
        for clock, events in at.items():
            tiles.append([(ms(f"2026-11-20T{clock}Z") - day * 24 * HOUR) // HOUR, events, [], []])
    profile["tiles"] = {"m": [], "h": sorted(tiles)}
    if tz is not None:
        profile["tz"] = [tz, 0]
    return profile


def test_it_picks_the_persons_usual_hour() -> None:
    profile = active({"18:00": 3, "09:00": 1})
    now = ms("2026-11-21T14:10:00Z")
    assert usual_hours(profile, now) == [18, 9]
    assert next_send_time(profile, now, 24 * HOUR) == ms("2026-11-21T18:00:00Z")
    # Already in the usual hour: at once.
    assert next_send_time(profile, ms("2026-11-21T18:20:00Z"), 24 * HOUR) == ms(
        "2026-11-21T18:20:00Z"
    )


def test_the_window_bounds_it_to_the_best_hour_it_reaches() -> None:
    profile = active({"18:00": 6, "16:00": 2})
    now = ms("2026-11-21T14:10:00Z")
    assert next_send_time(profile, now, 3 * HOUR) == ms("2026-11-21T16:00:00Z")
    # Neither hour within reach: the earliest time, not a later one of no habit.
    assert next_send_time(profile, now, HOUR) == now
    assert next_send_time(profile, now, 0) == now


def test_with_no_history_it_is_the_earliest_time_outside_quiet_hours() -> None:
    empty = new_profile("u1")
    assert usual_hours(empty, 0) == []
    now = ms("2026-11-21T14:10:00Z")
    assert next_send_time(empty, now, 24 * HOUR, [NIGHT]) == now
    # Too little to be a habit: four events at 3 am.
    assert next_send_time(active({"03:00": 1}, days=4), now, 24 * HOUR, [NIGHT]) == now


def test_quiet_hours_across_midnight_push_it_to_the_morning() -> None:
    late = ms("2026-11-21T22:30:00Z")
    assert next_send_time(new_profile("u1"), late, 24 * HOUR, [NIGHT]) == ms("2026-11-22T08:00:00Z")
    # Quiet hours that end off the hour end there, not at the next hour.
    half = Quiet(time(21), time(8, 30))
    assert next_send_time(new_profile("u1"), late, 24 * HOUR, [half]) == ms("2026-11-22T08:30:00Z")
    # A usual hour inside quiet hours is never used: the best hour outside them.
    owl = active({"23:00": 9, "10:00": 2})
    assert next_send_time(owl, late, 24 * HOUR, [NIGHT]) == ms("2026-11-22T10:00:00Z")
    # Quiet hours within one day.
    lunch = Quiet(time(12), time(14))
    assert next_send_time(new_profile("u1"), ms("2026-11-21T12:10:00Z"), HOUR * 3, [lunch]) == ms(
        "2026-11-21T14:00:00Z"
    )


def test_a_window_that_is_all_quiet_has_no_send_time() -> None:
    late = ms("2026-11-21T22:00:00Z")
    assert next_send_time(active({"18:00": 3}), late, 3 * HOUR, [NIGHT]) is None


def test_hours_are_the_persons_own_from_their_time_zone() -> None:
    # 18:00 in New York (UTC-5 in November) is 23:00 UTC.
    profile = active({"23:00": 4}, tz="America/New_York")
    now = ms("2026-11-21T14:10:00Z")  # 09:10 in New York
    assert usual_hours(profile, now) == [18]
    assert next_send_time(profile, now, 24 * HOUR, [NIGHT]) == ms("2026-11-21T23:00:00Z")
    # The same habit in UTC would be night: quiet hours are the person's.
    assert next_send_time(active({"23:00": 4}), now, 24 * HOUR, [NIGHT]) == now
    # An offset of +05:30: hours of their day start at half past in UTC.
    india = active({"13:30": 4}, tz="+05:30")  # 19:00 there
    assert usual_hours(india, now) == [19]
    assert next_send_time(india, ms("2026-11-21T05:00:00Z"), 24 * HOUR) == ms(
        "2026-11-21T13:30:00Z"
    )


def test_quiet_hours_of_a_fixed_zone_apply_whatever_the_persons() -> None:
    # The rules file's quiet hours are in its zone: 21:00-08:00 New York is 02:00-13:00 UTC.
    office = Quiet(time(21), time(8), ZoneInfo("America/New_York"))
    now = ms("2026-11-21T03:00:00Z")
    assert next_send_time(new_profile("u1"), now, 24 * HOUR, [office]) == ms("2026-11-21T13:00:00Z")


def test_a_zone_is_an_iana_name_or_an_offset_and_anything_else_is_utc() -> None:
    assert zone_of("Europe/Paris") == ZoneInfo("Europe/Paris")
    assert zone_of("-08:00").utcoffset(None).total_seconds() == -8 * 3600  # type: ignore[union-attr]
    for name in (None, "", "Mars/Olympus", "America", "+15:00", "../../etc/passwd"):
        assert zone_of(name) == UTC, name


def test_segment_context_timezone_is_kept_and_a_bad_one_is_ignored() -> None:
    body = {"type": "page", "userId": "u1", "timestamp": "2026-11-21T10:00:00Z",
            "context": {"timezone": "Europe/Berlin"}}  # fmt: skip
    assert decode("clickstream", orjson.dumps(body))["tz"] == "Europe/Berlin"
    for bad in (42, "x" * 80, "Europe/Berlin; DROP", {"name": "UTC"}):
        event = decode("clickstream", orjson.dumps({**body, "context": {"timezone": bad}}))
        assert "tz" not in event and event["kind"] == "page"


# The cart-abandonment timer in the fold, on event time.
RULES = policy()
CART = RULES.rules.rule("cart_abandoned")
ADD = {"v": 1, "kind": "track", "name": "Product Added", "props": {"product_id": "p-101"}}
USER = next(u for u in (f"c{n}" for n in range(100))
            if not in_holdout(u, "cart_abandoned", CART.holdout_pct))  # fmt: skip


class Partition:
    """One partition's table and timers, folded and ticked as the context agent does."""

    def __init__(self) -> None:
        self.store: dict[str, Any] = {}
        self.clock = Clock()
        self.timers: set[tuple[int, str, str]] = set()

    def fold(self, *events: dict[str, Any]) -> Fold:
        fold = Fold(self.store.get, RULES, self.clock)
        for event in events:
            fold.apply({"at": event["ts"], **event})
        self.store.update(fold.profiles)
        self.timers.update(fold.timers)
        return fold

    def tick(self, event_time: int, wall: int | None = None) -> list[dict[str, Any]]:
        """Fire the timers due by ``event_time``; the moments they gave."""
        fold = Fold(self.store.get, RULES, self.clock)
        for due, rule, user in sorted(self.timers):
            if due <= event_time:
                self.timers.discard((due, rule, user))
                fold.fire(rule, user, event_time, wall or event_time, due)
        self.store.update(fold.profiles)
        self.timers.update(fold.timers)
        return [moment for _event, moment in fold.moments]


def pages(user: str, clock: str, days: int) -> list[dict[str, Any]]:
    """A page view at ``clock`` (UTC) on each of the ``days`` days before 2026-11-21."""
    return [{"v": 1, "kind": "page", "id": f"{user}-{clock}-{d}", "user": user, "name": "/",
             "ts": ms(f"2026-11-21T{clock}Z") - d * 24 * HOUR, "props": {}}
            for d in range(days, 0, -1)]  # fmt: skip


def test_a_left_cart_is_reminded_at_the_persons_usual_hour_in_event_time() -> None:
    p = Partition()
    p.fold(*pages(USER, "15:05", 6))
    added = ms("2026-11-21T13:00:00Z")
    p.fold({**ADD, "id": "a1", "user": USER, "ts": added})
    earliest = added + CART.idle_ms  # 13:30; the window reaches 16:30
    assert p.timers == {(ms("2026-11-21T15:00:00Z"), "cart_abandoned", USER)}
    assert p.tick(earliest) == [] and p.tick(ms("2026-11-21T14:59:59Z")) == []
    [moment] = p.tick(ms("2026-11-21T15:00:00Z"))
    assert moment["event_ts"] == earliest  # the cart was left then: its age counts from then
    assert moment["send_at"] == ms("2026-11-21T15:00:00Z") and "suppressed" not in moment
    assert moment["channel"] == "push"
    assert p.tick(ms("2026-11-21T18:00:00Z")) == []  # once


def test_a_cart_changed_again_moves_its_reminder_and_the_old_timer_gives_nothing() -> None:
    p = Partition()
    p.fold(*pages(USER, "15:05", 6))
    p.fold({**ADD, "id": "a1", "user": USER, "ts": ms("2026-11-21T13:00:00Z")})
    p.fold({**ADD, "id": "a2", "user": USER, "ts": ms("2026-11-21T14:50:00Z"),
            "props": {"product_id": "p-203"}})  # fmt: skip
    # The first timer stays in the table; the new wait ends at 15:20, still in the usual hour.
    assert sorted(due for due, _rule, _user in p.timers) == [
        ms("2026-11-21T15:00:00Z"), ms("2026-11-21T15:20:00Z")
    ]  # fmt: skip
    assert p.tick(ms("2026-11-21T15:10:00Z")) == []  # the cart changed since: not idle yet
    [moment] = p.tick(ms("2026-11-21T15:20:00Z"))
    assert moment["cart"] == ["p-101", "p-203"] and moment["send_at"] == moment["event_ts"]


def test_a_timer_set_for_an_older_wait_gives_way_to_the_current_waits_best_time() -> None:
    p = Partition()
    views = pages(USER, "15:05", 6) + pages(USER, "16:05", 6) + pages(USER, "16:35", 6)
    p.fold(*sorted(views, key=lambda event: event["ts"]))  # in time order: none is late
    p.fold({**ADD, "id": "a1", "user": USER, "ts": ms("2026-11-21T12:00:00Z")})
    # From 12:30 the window reaches 15:30: 15:00, the best hour short of 16:00.
    assert {due for due, _r, _u in p.timers} == {ms("2026-11-21T15:00:00Z")}
    p.fold({**ADD, "id": "a2", "user": USER, "ts": ms("2026-11-21T13:40:00Z"),
            "props": {"product_id": "p-203"}})  # fmt: skip
    # At 15:10 the first timer is due and the cart has sat idle since 14:10, but
    # 16:00, the person's best hour, is now in reach: the reminder waits for it.
    assert p.tick(ms("2026-11-21T15:10:00Z")) == []
    assert "cart_abandoned" not in p.store[USER]["moments"]  # nothing fired
    [moment] = p.tick(ms("2026-11-21T16:00:00Z"))
    assert moment["send_at"] == ms("2026-11-21T16:00:00Z")
    assert moment["event_ts"] == ms("2026-11-21T14:10:00Z")


def test_a_lapsed_shopper_is_invited_back_at_their_usual_hour() -> None:
    back = RULES.rules.rule("win_back")
    [user] = [u for u in (f"w{n}" for n in range(100))
              if not in_holdout(u, "win_back", back.holdout_pct)][:1]  # fmt: skip
    store = RULES.reference.current.stores["s-flatiron"]
    p = Partition()
    p.fold(*pages(user, "19:05", 6))
    visit = ms("2026-11-21T12:00:00Z")
    p.fold({"v": 1, "kind": "location", "id": "ping", "user": user, "ts": visit,
            "props": {"lat": store.lat, "lon": store.lon}})  # fmt: skip
    lapsed = visit + back.lapsed_ms
    evening = lapsed + 7 * HOUR  # 19:00 of the day the lapse ran out
    assert p.timers == {(evening, "win_back", user)}
    assert p.tick(evening - 1) == []
    [moment] = p.tick(evening)
    assert (moment["event_ts"], moment["send_at"]) == (lapsed, evening)
    assert (moment["channel"], moment["channel_reason"]) == ("push", "only")


def test_a_reminder_fired_too_late_is_still_stale() -> None:
    p = Partition()
    added = ms("2026-11-21T10:00:00Z")
    p.fold({**ADD, "id": "a1", "user": USER, "ts": added})
    [(due, _rule, _user)] = p.timers
    assert due == added + CART.idle_ms  # no history: at once
    [moment] = p.tick(due, wall=due + MOMENT_TYPES["cart_abandoned"].max_age_ms + MINUTE)
    assert moment["suppressed"] == "stale"


def test_a_cart_left_with_only_quiet_hours_in_reach_is_suppressed_quiet_hours() -> None:
    p = Partition()
    added = ms("2026-11-21T21:30:00Z")  # reachable until 01:00, all of it quiet (UTC: no zone)
    p.fold({**ADD, "id": "a1", "user": USER, "ts": added})
    [(due, _rule, _user)] = p.timers
    assert due == added + CART.idle_ms
    [moment] = p.tick(due)
    assert moment["suppressed"] == "quiet_hours"
    assert "cart_abandoned" not in p.store[USER]["moments"]  # nothing sent: no cooldown


def test_a_suppressed_reminder_is_judged_once_however_many_timers_its_cart_left() -> None:
    p = Partition()
    first = ms("2026-11-21T22:41:00Z")  # all of the window quiet: suppressed, no cooldown
    p.fold({**ADD, "id": "a1", "user": USER, "ts": first})
    p.fold({**ADD, "id": "a2", "user": USER, "ts": first + MINUTE,
            "props": {"product_id": "p-203"}})  # fmt: skip
    assert len(p.timers) == 2  # the first wait's timer is still in the table
    moments = p.tick(first + MINUTE + CART.idle_ms)  # both due by this tick
    assert [m["suppressed"] for m in moments] == ["quiet_hours"]


def test_a_reminder_whose_tick_comes_in_quiet_hours_is_not_sent_then() -> None:
    p = Partition()
    added = ms("2026-11-21T20:00:00Z")
    p.fold({**ADD, "id": "a1", "user": USER, "ts": added})
    [(due, _rule, _user)] = p.timers  # before 21:00: not quiet when planned
    [moment] = p.tick(due, wall=ms("2026-11-21T21:10:00Z"))  # but judged after 21:00
    assert moment["suppressed"] == "quiet_hours"


def test_the_time_zone_of_the_persons_latest_segment_call_sets_their_hours() -> None:
    p = Partition()
    # 21:30 UTC is 16:30 in New York: not quiet there.
    p.fold({"v": 1, "kind": "page", "id": "z", "user": USER, "name": "/", "props": {},
            "tz": "America/New_York", "ts": ms("2026-11-21T21:00:00Z")})  # fmt: skip
    added = ms("2026-11-21T21:30:00Z")
    p.fold({**ADD, "id": "a1", "user": USER, "ts": added})
    [moment] = p.tick(added + CART.idle_ms)
    assert "suppressed" not in moment


def test_every_timed_send_window_keeps_its_offers_from_going_stale() -> None:
    for kind in MOMENT_TYPES.values():
        if kind.timer is None or kind.timer.send_within_ms is None:
            continue
        fields = kind.config.model_fields
        [name] = [f for f in fields if f.startswith("send_within_")]
        most = next(m.le for m in fields[name].metadata if hasattr(m, "le"))
        widest = kind.timer.send_within_ms(kind.config(**{name: most}))
        assert widest + TIMER_SLACK_MS < kind.max_age_ms, kind.name


def test_timers_keep_out_of_the_rules_files_quiet_hours_too_in_its_zone() -> None:
    rules = Rules.model_validate(
        {"timezone": "America/New_York", "quiet_hours": {"start": "22:00", "end": "07:00"}}
    )
    reference = RULES.reference
    both = Policy.of(Settings(), rules, reference).send_quiet
    assert both == (NIGHT, Quiet(time(22), time(7), ZoneInfo("America/New_York")))
    assert Policy.of(Settings(send_quiet_hours="off"), Rules(), reference).send_quiet == ()


def test_the_offset_is_the_zones_at_that_instant_across_a_clock_change() -> None:
    # 2026-03-08 06:30Z is 01:30 in New York, still EST (-5): the spring change
    # comes at 07:00Z. Read as a local time, 06:30 would already be EDT (-4).
    instant = int(datetime(2026, 3, 8, 6, 30, tzinfo=UTC).timestamp() * 1000)
    profile = new_profile("u1")
    profile["tiles"] = {"h": [[instant // 3_600_000, 10]]}  # 06:00-07:00Z busy
    counts = hour_activity(profile, zone_of("America/New_York"), instant)
    assert counts[1] == 10 and sum(counts) == 10  # 01:00 EST
