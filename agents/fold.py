"""The fold: a person's profile and their events in, the profile and what
the events cause out. No I/O: the caller loads profiles, writes the changes
and sends the outputs (agents/context.py, agents/output.py).

Per event, in order:

- Forwarding: a profile merged into another keeps only ``merged_into``;
  events that still arrive for the old id go on to the new one.
- Dedupe: an event id the profile has already applied is dropped. This is
  what makes redelivery harmless: ingest resends a batch after a crash, and
  after a restart the context agent replays bundles whose effects the
  recovered table already holds.
- Event time: a behavioural event older than the partition's watermark
  (agents/clock.py) is applied, but not counted in the windowed features,
  and counted ``late``; nothing is refused for its time.
- Identity: a ``merge`` event (from ingest) moves an old id's profile into
  the new id's, by an ``absorb`` event to that id's partition, so events from
  before an identify count for the merged profile.
- Otherwise the event is folded in and the moment rules run; a moment
  carries the profile as it was at that instant, so the offer stage needs no
  second lookup. Feedback and orders are joined to the moments before them
  (agents/attribution.py).

The call order, for a bundle: :meth:`Fold.apply` per event, or
:meth:`Fold.fire` per timer due on a tick; then :meth:`Fold.changes` once
for the table writes, and the lists of outputs. The partition's
:class:`Clock` is the caller's: it reads it before and writes it after,
if ``clock.moved``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.attribution import group_of, join
from agents.channels import NO_CHANNEL, choose_channel
from agents.clock import INTERNAL_KINDS, Clock
from agents.features import BEHAVIOUR, features
from agents.features import add as add_to_tiles
from agents.features import merge as merge_features
from agents.freshness import mark as mark_families
from agents.moment_types import MOMENT_TYPES, MomentType, RuleConfig, reference_used, stale
from agents.moments import offer_id, update_visit
from agents.profile import (
    PROFILE_VERSION,
    Profile,
    apply_event,
    first_sight,
    merge_profiles,
    new_profile,
    remember_offer,
    upgraded,
)
from agents.replies import is_reply, merge_replies, remember_reply
from agents.rules import Rules, suppression
from agents.sendtime import Quiet, next_send_time, person_zone, quiet_periods
from agents.taste import KINDS as TASTE_KINDS
from agents.taste import merged as merge_taste
from agents.taste import observe as observe_taste
from agents.timers import timer_key
from models.prompts import variant_for
from streams.codecs import dumps, loads
from streams.domain import Event, Moment
from streams.reference import ReferenceData
from streams.settings import Settings

# An event forwarded more often than this is caught in ids merged into each other.
MAX_HOPS = 4
Enabled = tuple[tuple[MomentType, RuleConfig], ...]


@dataclass(frozen=True)
class Policy:
    """What the fold judges by: the moment rules, the reference data in
    force, and the windows from the settings. Read live on every event, so
    a fold and its timers never disagree about a rule."""

    rules: Rules
    reference: ReferenceData
    allowed_lateness_ms: int
    attribution_ms: int
    timer_idle_ms: int
    # When timed offers may not go out (agents/sendtime.py): the person's quiet
    # hours (KAIROS_SEND_QUIET_HOURS), and the rules file's, in its time zone.
    send_quiet: tuple[Quiet, ...] = ()
    taste_half_life_ms: int = 14 * 86_400_000
    # The enabled moment types with their rules, found once (the rules are
    # frozen), since every event goes through them: those detected on an
    # event, and per event kind those whose timer it can move.
    detected: Enabled = field(init=False)
    timed: dict[str, Enabled] = field(init=False)

    def __post_init__(self) -> None:
        enabled = [(kind, self.rules.rule(kind.name)) for kind in MOMENT_TYPES.values()]
        enabled = [(kind, config) for kind, config in enabled if config.enabled]
        detected = tuple((kind, config) for kind, config in enabled if kind.detect is not None)
        timed: dict[str, list[tuple[MomentType, RuleConfig]]] = {}
        for kind, config in enabled:
            for watched in kind.timer.watches if kind.timer is not None else ():
                timed.setdefault(watched, []).append((kind, config))
        object.__setattr__(self, "detected", detected)
        object.__setattr__(self, "timed", {watched: tuple(t) for watched, t in timed.items()})

    @classmethod
    def of(cls, settings: Settings, rules: Rules, reference: ReferenceData) -> Policy:
        return cls(
            rules,
            reference,
            allowed_lateness_ms=int(settings.allowed_lateness_s * 1000),
            attribution_ms=int(settings.attribution_window_s * 1000),
            timer_idle_ms=int(settings.timer_idle_s * 1000),
            send_quiet=quiet_periods(settings, rules),
            taste_half_life_ms=int(settings.taste_half_life_s * 1000),
        )

    def send_time(self, kind: MomentType, config: RuleConfig, profile: Profile, due: int) -> int:
        """When a timer of ``kind`` due at ``due`` goes off: at the person's best time
        in its send window; at ``due`` without a window, or if all of it is
        quiet (its moment is then suppressed ``quiet_hours``)."""
        within = kind.timer.send_within_ms if kind.timer is not None else None
        if within is None:
            return due
        best = next_send_time(profile, due, within(config), self.send_quiet)
        return due if best is None else best

    def quiet_at(self, profile: Profile, ts: int) -> bool:
        zone = person_zone(profile)
        return any(quiet.covers(ts, zone) for quiet in self.send_quiet)


def update(policy: Policy, profile: Profile, event: Event, windows: bool = True) -> list[Moment]:
    """Fold ``event`` into ``profile`` (into its windows too, if ``windows``);
    the moments that fire, judged."""
    if event["kind"] in BEHAVIOUR and windows:
        add_to_tiles(profile, event)
    if event["kind"] == "location":
        update_visit(profile, event, policy.reference.current)
        profile["n"] += 1
    elif event["kind"] == "absorb":
        source = upgraded(event["profile"])
        merge_profiles(profile, source)
        merge_features(profile, source)
        merge_replies(profile, source)
        merge_taste(profile, source, policy.reference.vectors, policy.taste_half_life_ms)
    else:
        apply_event(profile, event)
    fired = []
    for kind, config in policy.detected:
        assert kind.detect is not None
        before = profile["moments"].get(kind.name)
        moment = kind.detect(profile, config, policy.rules.opt_out_traits)
        if moment is not None:
            fired.append(judged(policy.rules, profile, moment, before, event.get("at")))
    return fired


def judged(
    rules: Rules, profile: Profile, moment: Moment, before: int | None, at: int | None,
    quiet: bool = False,
) -> Moment:  # fmt: skip
    """The moment with its channel (agents/channels.py), marked ``suppressed`` if
    policy holds its offer back (agents/rules.py), ``no_channel`` if the person
    consented to none of its type's channels, ``quiet_hours`` if ``quiet`` (its
    send time is in the person's quiet hours), or ``stale`` if, detected at
    ``at`` (wall clock), it is older than its type's offers may be.

    ``before`` is the rule's last moment time before this one: when nothing
    is sent (quiet hours, a cap, no channel), the cooldown does not start. A
    stale moment keeps it: the same state would only be staler later. No
    channel is judged before the holdout: a person nobody can reach is in
    neither group.
    """
    choice = choose_channel(profile, moment["type"])
    if choice.channel is not None:
        moment["channel"], moment["channel_reason"] = choice.channel, choice.reason
    reason = "stale" if at and stale(moment, at) else "quiet_hours" if quiet else None
    if reason is None and choice.channel is None:
        reason = NO_CHANNEL
    reason = reason or suppression(profile, moment, rules)
    if reason is not None:
        moment["suppressed"] = reason
    if reason in ("quiet_hours", "frequency_cap", NO_CHANNEL):
        _restore(profile, moment["type"], before)
    return moment


def _restore(profile: Profile, moment_type: str, before: int | None) -> None:
    """Put the rule's last moment time back to ``before``: this one did not count."""
    if before is None:
        profile["moments"].pop(moment_type, None)
    else:
        profile["moments"][moment_type] = before


class Fold:
    """One bundle's effect: profiles touched, and what to send or dead-letter."""

    def __init__(
        self, load: Callable[[str], Profile | None], policy: Policy, clock: Clock | None = None
    ) -> None:
        self._load = load
        self.policy = policy
        self.clock = Clock() if clock is None else clock
        self.profiles: dict[str, Profile] = {}
        self.dirty: set[str] = set()
        self.moments: list[tuple[Event, Moment]] = []
        self.timers: set[tuple[int, str, str]] = set()  # (due, rule, profile id)
        self.forwards: list[Event] = []
        self.dead: list[tuple[Event, str, str]] = []
        self.applied = 0
        self.duplicates = 0
        self.late = 0  # behavioural events behind the watermark: not in the windows
        self.future = 0  # stamped too far ahead: taken at their arrival (agents/ingest.py)
        self.merges: Counter[str] = Counter()
        self.outcomes: list[dict[str, Any]] = []  # joined to moments (agents/attribution.py)
        self.unattributed: Counter[str] = Counter()
        self.replies: Counter[str] = Counter()  # what became of each reply's text
        self.fresh: list[tuple[str, int]] = []  # (feature family, event time) applied

    def profile(self, key: str) -> Profile:
        profile = self.profiles.get(key)
        if profile is None:
            profile = self._load(key) or new_profile(key)
            self.profiles[key] = profile
        return profile

    def apply(self, event: Event) -> None:
        key = event["user"]
        profile = self.profile(key)
        into = profile.get("merged_into")
        if event["kind"] == "merge":
            self._merge(profile, event)
        elif into is not None:
            if event["kind"] == "absorb" and into == event["from"]:
                self._revive(profile, event)
            else:
                self._forward(event, into)
        elif not first_sight(profile, event["id"]):
            # Written again: a redelivered bundle may be one whose changelog
            # records never landed, though the local store kept its effects.
            self.dirty.add(key)
            self.duplicates += 1
        else:
            self.dirty.add(key)
            if event["kind"] == "absorb":
                self.merges["merged"] += 1
            else:
                self.applied += 1
            self._fold_in(profile, event, self._in_windows(event))

    def _in_windows(self, event: Event) -> bool:
        """Whether ``event`` counts in the windows: not behind the watermark as
        it stood before it. Moves the partition's clock on."""
        if event["kind"] in INTERNAL_KINDS:
            return True  # an absorb brings tiles that were on time where they were
        if "ahead_ms" in event:
            self.future += 1
        watermark = self.clock.watermark(self.policy.allowed_lateness_ms)
        late = event["kind"] in BEHAVIOUR and event["ts"] < watermark
        self.late += late
        self.clock.observe(event)
        return not late

    def _fold_in(self, profile: Profile, event: Event, windows: bool = True) -> None:
        """Fold a new event in: join it to moments, run the rules, set the timers."""
        # Waits the event can move, with when each began before it (an absorb
        # brings the old id's cart and visits).
        timed = self.policy.timed.get(event["kind"])  # most kinds move none
        waits = [(kind, config, kind.timer.started_at(profile)) for kind, config in timed
                 if kind.timer is not None] if timed else []  # fmt: skip
        joined, unattributed = join(profile, event, self.policy.attribution_ms)
        self.outcomes += joined
        if unattributed:
            self.unattributed[unattributed] += 1
        if is_reply(event):
            self.replies[remember_reply(profile, event, self.policy.reference.current)] += 1
        # The product vectors beside the reference data (agents/embedding.py).
        vectors, half_life = self.policy.reference.vectors, self.policy.taste_half_life_ms
        tasted = event["kind"] in TASTE_KINDS and observe_taste(profile, event, vectors, half_life)
        for moment in update(self.policy, profile, event, windows):
            self._record(profile, event, moment)
        self.fresh += mark_families(profile, event, tasted)
        for kind, config, before in waits:
            assert kind.timer is not None
            after = kind.timer.started_at(profile)
            if after is not None and after != before:
                due = after + kind.timer.wait_ms(config)
                due = self.policy.send_time(kind, config, profile, due)
                self.timers.add((due, kind.name, event["user"]))

    def fire(self, rule: str, key: str, now: int, at: int, due: int | None = None) -> None:
        """A timer of ``rule`` for ``key`` ran out: judge the rule at ``now``, the
        partition's event time; ``at`` is the tick's wall-clock time.

        A moment of a type with a send window goes out at its best time in
        the window as the profile is now (agents/sendtime.py); not yet, if
        that is still to come (the timer was set for an older wait, or the
        person's habits moved): then the timer is set again for it. The
        window's end bounds how often that can happen."""
        profile = self.profile(key)
        if "merged_into" in profile:
            return  # the profile moved, with its cart and visits, and timers of its own
        kind = MOMENT_TYPES.get(rule)
        config = self.policy.rules.rule(rule) if kind is not None else None
        if kind is None or kind.timer is None or config is None or not config.enabled:
            return
        started = kind.timer.started_at(profile)
        if due is not None and started is not None and due < started + kind.timer.wait_ms(config):
            # Set for an older wait (the cart changed since): the wait now has a
            # timer of its own, and two would send its moment twice when it is
            # suppressed (no cooldown starts then to stop the second).
            return
        before = profile["moments"].get(rule)
        moment, again = kind.timer.fire(profile, now, config, self.policy.rules.opt_out_traits)
        if again is not None:
            self.timers.add((self.policy.send_time(kind, config, profile, again), rule, key))
            self.dirty.add(key)
        elif moment is not None:
            self.dirty.add(key)
            planned = self.policy.send_time(kind, config, profile, moment["event_ts"])
            if planned > now:
                _restore(profile, rule, before)  # it has not fired yet
                self.timers.add((planned, rule, key))
                return
            quiet = False
            if kind.timer.send_within_ms is not None:
                moment["send_at"] = planned
                # Quiet then, or now: a late tick (a backlog, a restart) sends it now.
                quiet = any(self.policy.quiet_at(profile, ts) for ts in (planned, at) if ts)
            trigger: Event = {"kind": "timer", "user": key, "ts": moment["event_ts"], "at": at,
                              "timer": True}  # fmt: skip
            moment = judged(self.policy.rules, profile, moment, before, at, quiet)
            self._record(profile, trigger, moment)

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """The table writes: each changed profile once, and the timers set."""
        written: list[tuple[bytes, bytes | None]] = [
            (key.encode(), dumps(self.profiles[key])) for key in self.dirty
        ]
        return written + [(timer_key(due, rule, key), b"") for due, rule, key in self.timers]

    def _record(self, profile: Profile, event: Event, moment: Moment) -> None:
        moment["profile"] = loads(dumps(profile))  # as it is now, not at bundle end
        moment["features"] = features(profile, moment["event_ts"], self.policy.reference.current)
        moment["variant"] = variant_for(moment["user"], moment["type"])
        reference = self.policy.reference  # the slice the offer's context will draw on
        moment["reference"] = reference_used(profile, moment, reference.current,
                                             self.policy.rules.rule(moment["type"]),
                                             reference.vectors)  # fmt: skip
        group = group_of(moment)
        if group is not None:
            remember_offer(profile, offer_id(moment["id"]), moment["type"], moment["event_ts"],
                           moment["variant"], group, moment.get("channel"))  # fmt: skip
        self.moments.append((event, moment))

    def _merge(self, profile: Profile, event: Event) -> None:
        """Move the profile of ``event["user"]`` into ``event["into"]``."""
        old, into = event["user"], event["into"]
        held = profile.get("merged_into")
        if held is not None:
            self.merges["already" if held == into else "conflict"] += 1
            return
        self.profiles[old] = {
            "v": PROFILE_VERSION, "user": old, "merged_into": into, "updated": event["ts"]
        }  # fmt: skip
        self.dirty.add(old)
        self._forward(
            {"v": event["v"], "id": f"absorb:{old}:{into}", "kind": "absorb", "user": into,
             "from": old, "profile": profile, "ts": event["ts"], "at": event["at"]},
            into,
        )  # fmt: skip

    def _revive(self, stub: Profile, event: Event) -> None:
        """``A`` merged into ``B``, then ``B`` into ``A``: ``A`` takes it all back."""
        key = stub["user"]
        revived = event["profile"].copy()
        revived["user"] = key
        profile = upgraded(revived)
        profile["ids"] = [i for i in profile["ids"] if i != key]
        if event["from"] not in profile["ids"]:
            profile["ids"].insert(0, event["from"])
        self.profiles[key] = profile
        self.dirty.add(key)
        self.merges["merged"] += 1

    def _forward(self, event: Event, into: str) -> None:
        hops = event.get("hops", 0) + 1
        if hops > MAX_HOPS:
            self.merges["loop"] += 1
            reason = (
                f"event for {event['user']!r} was forwarded {MAX_HOPS} times: "
                "its ids are merged into each other"
            )
            self.dead.append((event, "identity_loop", reason))
            return
        self.forwards.append({**event, "user": into, "hops": hops})
