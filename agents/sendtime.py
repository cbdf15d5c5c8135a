"""Next best send time: when a timed offer should go out, from the person's habits.

A cart reminder or a win-back lands better at the hour the person is
usually active than at whatever minute their wait ran out. The hour tiles of
the windowed features (agents/features.py: events per hour, kept for the
latest 7 days of activity, whenever that was) say when that is: their
events counted by hour of the person's day. :func:`next_send_time` picks,
from ``now`` to ``now + within_ms``, the time whose hour of day had the
most events, the earliest of equals, and never one in quiet hours.

- With fewer than :data:`MIN_HISTORY` events in the tiles there is no habit
  to follow (one visit at 2 am is not one): the earliest time outside quiet
  hours.
- The candidates are ``now`` itself, each start of an hour of the person's
  day after it, and the end of each quiet period: whichever wins, it is the
  earliest moment of its hour that may be used.
- None: every time in the range is quiet.

The person's day is their time zone's: the latest Segment
``context.timezone`` their events carried (an IANA name, or an offset such
as ``+05:30``), kept in the profile (``tz``), else UTC. Activity is placed in
hours of that day by the zone's offset now; a change to or from daylight
saving time in the last week moves the older hours by one, which a habit
survives.

Pure: the fold (agents/fold.py) sets each cart and win-back timer with it,
and the recommendations can ask it of any profile at any time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from agents.features import HOUR_MS
from agents.rules import Rules
from streams.domain import Profile
from streams.settings import Settings

DAY_MS = 24 * HOUR_MS
# Events in the hour tiles before their hours say anything about the person.
MIN_HISTORY = 5
# How far ahead the recommendations look when no moment bounds it: a whole day.
DEFAULT_WITHIN_MS = DAY_MS


@dataclass(frozen=True)
class Quiet:
    """Hours in which nothing is sent: from ``start`` to ``end`` (across midnight
    when ``end`` comes first), in ``zone``, or in the person's own if None."""

    start: time
    end: time
    zone: tzinfo | None = None

    def covers(self, ts: int, person: tzinfo) -> bool:
        local = _local(ts, self.zone or person).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends(self, since: int, until: int, person: tzinfo) -> list[int]:
        """The times this quiet period ends, after ``since`` and up to ``until``."""
        zone = self.zone or person
        day = _local(since, zone).date()
        out: list[int] = []
        while True:
            end = int(datetime.combine(day, self.end, zone).timestamp() * 1000)
            if end > until:
                return out
            if end > since:
                out.append(end)
            day += timedelta(days=1)


def quiet_periods(settings: Settings, rules: Rules) -> tuple[Quiet, ...]:
    """The quiet hours in force: ``KAIROS_SEND_QUIET_HOURS`` in the person's day,
    and the rules file's ``quiet_hours`` in its time zone (no offer goes out
    in them at all, so no timer is set for them either)."""
    quiet = [Quiet(*settings.send_quiet)] if settings.send_quiet else []
    if rules.quiet_hours is not None:
        held = rules.quiet_hours
        quiet.append(Quiet(held.start, held.end, ZoneInfo(rules.timezone)))
    return tuple(quiet)


@lru_cache(maxsize=1024)
def zone_of(name: str | None) -> tzinfo:
    """The zone named by a Segment ``context.timezone``: an IANA name or an offset
    such as ``+05:30``; UTC for None, or for one no zone database knows."""
    if not name:
        return UTC
    if name[0] in "+-":
        digits = name[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 14 or minutes > 59:  # no place is further from UTC
            return UTC
        offset = timedelta(hours=hours, minutes=minutes)
        return timezone(-offset if name[0] == "-" else offset)
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # unknown (ZoneInfoNotFoundError), or no key
        return UTC


def person_zone(profile: Profile) -> tzinfo:
    held = profile.get("tz")
    return zone_of(held[0] if held else None)


def hour_activity(profile: Profile, zone: tzinfo, now: int) -> list[int]:
    """Events per hour of the day in ``zone`` (index 0 is midnight), from the hour tiles."""
    offset = datetime.fromtimestamp(now / 1000, zone).utcoffset() or timedelta(0)
    shift = int(offset.total_seconds() * 1000)
    # By the middle of each UTC hour: with an offset such as +05:30 an hour
    # tile spans two local hours, and is given to the one its middle is in.
    hours = (HOUR_MS // 2 + shift) // HOUR_MS  # tile index + this = local hour index
    counts = [0] * 24
    for tile in (profile.get("tiles") or {}).get("h", ()):
        counts[(tile[0] + hours) % 24] += tile[1]
    return counts


def usual_hours(profile: Profile, now: int, top: int = 3) -> list[int]:
    """The person's most active hours of their day, most active first; none
    without :data:`MIN_HISTORY` events."""
    counts = hour_activity(profile, person_zone(profile), now)
    if sum(counts) < MIN_HISTORY:
        return []
    ranked = sorted((hour for hour in range(24) if counts[hour]), key=lambda h: -counts[h])
    return ranked[:top]


def next_send_time(
    profile: Profile,
    now_ms: int,
    within_ms: int = DEFAULT_WITHIN_MS,
    quiet: Sequence[Quiet] = (),
) -> int | None:
    """The best time from ``now_ms`` to ``now_ms + within_ms`` to reach the person:
    in their most active hour of the day, the earliest of equals, never in
    ``quiet``; None if all of it is quiet."""
    zone = person_zone(profile)
    latest = now_ms + max(0, within_ms)
    allowed = [t for t in _candidates(now_ms, latest, zone, quiet)
               if not any(q.covers(t, zone) for q in quiet)]  # fmt: skip
    if not allowed:
        return None
    counts = hour_activity(profile, zone, now_ms)
    if sum(counts) < MIN_HISTORY:
        return allowed[0]
    return max(allowed, key=lambda t: (counts[_local(t, zone).hour], -t))


def _candidates(now: int, latest: int, zone: tzinfo, quiet: Sequence[Quiet]) -> list[int]:
    """``now``, each start of a local hour after it, and each end of a quiet period, in order."""
    offset = datetime.fromtimestamp(now / 1000, zone).utcoffset() or timedelta(0)
    shift = int(offset.total_seconds() * 1000)
    first = (now + shift) // HOUR_MS * HOUR_MS + HOUR_MS - shift
    times = {now, *range(first, latest + 1, HOUR_MS)}
    for period in quiet:
        times.update(period.ends(now, latest, zone))
    return sorted(times)


def _local(ts: int, zone: tzinfo) -> datetime:
    return datetime.fromtimestamp(ts / 1000, zone)
