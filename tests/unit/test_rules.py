"""Moment policy from the rules file: holdout, quiet hours, frequency cap, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.fold import update
from agents.moment_types.store_entry import store_entry
from agents.moments import update_visit
from agents.profile import apply_event, new_profile, remember_offer
from agents.rules import DEFAULT_FILE, Rules, RulesError, in_holdout, load_rules, suppression
from streams.reference import load_reference
from tests.support.harness import policy as fold_policy

REF = load_reference()
FLATIRON = REF.stores["s-flatiron"]
HOUR = 3_600_000


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def moment(user: str = "u1", ts: int = 0) -> dict[str, Any]:
    return {"type": "store_entry", "user": user, "event_ts": ts}


def test_the_shipped_rules_file_loads() -> None:
    rules = load_rules(DEFAULT_FILE)
    assert rules.rules.store_entry.holdout_pct == 10
    assert rules.max_offers_per_day == 3


def test_holdout_is_fixed_per_person_and_near_its_share() -> None:
    users = [f"u{n}" for n in range(20_000)]
    held = [u for u in users if in_holdout(u, "store_entry", 10)]
    assert 0.09 < len(held) / len(users) < 0.11
    assert held == [u for u in users if in_holdout(u, "store_entry", 10)]
    assert not any(in_holdout(u, "store_entry", 0) for u in users)
    assert all(in_holdout(u, "store_entry", 100) for u in users)


def test_quiet_hours_are_local_time_and_may_span_midnight() -> None:
    rules = Rules.model_validate(
        {"timezone": "America/New_York", "quiet_hours": {"start": "22:00", "end": "08:00"},
         "rules": {"store_entry": {"holdout_pct": 0}}}
    )  # fmt: skip
    profile = new_profile("u1")
    assert suppression(profile, moment(ts=at("2026-11-21T03:30:00")), rules) == "quiet_hours"
    assert suppression(profile, moment(ts=at("2026-11-21T12:59:00")), rules) == "quiet_hours"
    assert suppression(profile, moment(ts=at("2026-11-21T13:00:00")), rules) is None  # 08:00
    assert suppression(profile, moment(ts=at("2026-11-22T02:59:00")), rules) is None  # 21:59
    # A timed moment is judged when its offer goes out, not when its wait ran out.
    night = moment(ts=at("2026-11-21T03:30:00"))
    assert suppression(profile, {**night, "send_at": at("2026-11-21T14:00:00")}, rules) is None


def test_frequency_cap_counts_offers_in_the_last_24_hours() -> None:
    rules = Rules.model_validate(
        {"max_offers_per_day": 2, "rules": {"store_entry": {"holdout_pct": 0}}}
    )
    profile = new_profile("u1")
    remember_offer(profile, "o-1", "store_entry", 1 * HOUR)
    remember_offer(profile, "o-2", "store_entry", 5 * HOUR)
    assert suppression(profile, moment(ts=20 * HOUR), rules) == "frequency_cap"
    assert suppression(profile, moment(ts=25 * HOUR + 1), rules) is None  # o-1 is a day old


def test_holdout_moments_are_marked_and_still_start_the_cooldown() -> None:
    rules = Rules.model_validate({"rules": {"store_entry": {"holdout_pct": 100}}})
    profile = new_profile("u1")
    apply_event(profile, {"kind": "track", "name": "Product Viewed", "user": "u1", "ts": HOUR,
                          "props": {"product_id": "p-101"}})  # fmt: skip
    ping = {"kind": "location", "user": "u1", "ts": 2 * HOUR, "id": "p1",
            "props": {"lat": FLATIRON.lat, "lon": FLATIRON.lon}}  # fmt: skip
    update_visit(profile, ping, REF)
    fired = store_entry(profile, recent_interest_ms=24 * HOUR, cooldown_ms=6 * HOUR)
    assert fired is not None
    assert suppression(profile, fired, rules) == "holdout"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("rules: {store_entry: {holdout_pct: 120}}", "rules.store_entry.holdout_pct"),
        ("timezone: Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("quiet_hours: {start: '25:00', end: '08:00'}", "quiet_hours.start"),
        ("quiet_hours: {start: '22:00+01:00', end: '08:00'}", "quiet_hours.start"),
        ("rules: {store_entry: {cooldown: 5}}", "rules.store_entry.cooldown"),
        ("version: 2", "version"),
        ("rules: [", "not valid YAML"),
    ],
)
def test_a_bad_rules_file_names_the_field(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RulesError, match=r"rules file .*rules\.yaml") as caught:
        load_rules(path)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("policy", "outcomes"),
    [
        # Nothing was sent at 03:00, so the 07:00 visit is not in a cooldown.
        ({"quiet_hours": {"start": "00:00", "end": "06:00"}}, ["quiet_hours", None]),
        # The control group's cooldown runs as the treated group's does.
        ({"rules": {"store_entry": {"holdout_pct": 100}}}, ["holdout", "no moment"]),
    ],
)
def test_what_starts_the_cooldown(policy: dict[str, Any], outcomes: list[str | None]) -> None:
    rules = {"timezone": "UTC", "rules": {"store_entry": {"holdout_pct": 0}}} | policy
    judged_by = fold_policy(Rules.model_validate(rules))
    day = at("2026-11-21T00:00:00")
    profile = new_profile("u1")
    update(judged_by, profile, {"kind": "traits", "user": "u1", "ts": day, "id": "t",
                             "traits": {"favorite_category": "running"}})  # fmt: skip
    seen = []
    for n, (hour, inside) in enumerate([(3, True), (4, False), (7, True)]):
        lat = FLATIRON.lat + (0 if inside else 0.05)
        fired = update(judged_by, profile, {"kind": "location", "user": "u1", "id": f"p{n}",
                                         "ts": day + hour * HOUR,
                                         "props": {"lat": lat, "lon": FLATIRON.lon}})  # fmt: skip
        if inside:
            seen.append(fired[0].get("suppressed") if fired else "no moment")
    assert seen == outcomes
