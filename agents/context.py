"""Context: per-user profiles in a RocksDB table, identity merges, moments.

Reads kairos.internal.events, where each message is a bundle (a JSON array)
of events whose profile ids all live in the message's partition, so the
table partition and the message partition agree. Per bundle it reads each
user's profile once, folds in that user's events, and writes it back once:
one table write and one changelog message per user per bundle, however many
events the user had.

Per event, in order:

- Forwarding: a profile merged into another keeps only ``merged_into``;
  events that still arrive for the old id go on to the new one.
- Dedupe: an event id the profile has already applied is dropped. This is
  what makes redelivery harmless: ingest resends a batch after a crash, and
  after a restart this agent replays bundles whose effects the recovered
  table already holds.
- Identity: a ``merge`` event (from ingest) moves an old id's profile into
  the new id's, by an ``absorb`` event to that id's partition, so events from
  before an identify count for the merged profile.
- Otherwise the event is folded in and the moment rules run; a moment
  carries the profile as it was at that instant, so the offer stage needs no
  second lookup. Feedback and orders are joined to the moments before them
  (agents/attribution.py).

Ticks: every ``sweep_interval_s`` each worker sends a tick to each
partition it owns. On it, the agent fires the partition's timers that are
due (cart abandonment and win-back: keys in the profiles table, in due-time
order, written with the profile that set them), then reads the next
:data:`SWEEP_BATCH` profiles and deletes those idle longer than
``profile_ttl_s`` (a tombstone in the changelog). Going through the stream
keeps both in order with the partition's updates, so a tick cannot delete
a profile an event has just touched, nor judge a cart on stale state.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from agents.attribution import group_of, join
from agents.features import BEHAVIOUR, features, lateness
from agents.features import add as add_to_tiles
from agents.features import merge as merge_features
from agents.handoffs import Placed
from agents.moments import (
    CART_ABANDONED,
    STORE_ENTRY,
    WIN_BACK,
    cart_abandoned,
    cart_changed_at,
    last_store_visit,
    offer_id,
    store_entry,
    update_visit,
    win_back,
)
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
from agents.rules import Rules, suppression
from agents.runtime import Runtime
from models.prompts import variant_for
from streams.codecs import dumps, loads, now_ms
from streams.reference import ReferenceData
from streams.runtime.acks import process_in_order
from streams.runtime.bundles import bundles_by_partition
from streams.runtime.changelog import read, scan, write_batch
from streams.settings import Settings

log = logging.getLogger(__name__)

IN_FLIGHT = 200
SWEEP = "sweep"
# Timers live in the profiles table under these keys, in due-time order:
# b"\x00due:<13-digit due ms>:<rule>:<profile id>", so a tick reads only what
# is due.
TIMER_PREFIX = b"\x00due:"
TIMERS_END = b"\x00due;"
SWEEP_BATCH = 2000
# An event forwarded more often than this is caught in ids merged into each other.
MAX_HOPS = 4
# Kinds of event that can change a cart or a visit (an absorb brings the old id's).
CART_KINDS = frozenset({"track", "absorb", "order"})
VISIT_KINDS = frozenset({"location", "absorb"})


@dataclass(frozen=True)
class Policy:
    """What the fold judges by: the moment rules, the reference data in
    force, and the windows from the settings. Read live on every event, so
    a fold and its timers never disagree about a rule."""

    rules: Rules
    reference: ReferenceData
    allowed_lateness_ms: int
    attribution_ms: int

    @classmethod
    def of(cls, settings: Settings, rules: Rules, reference: ReferenceData) -> Policy:
        return cls(
            rules,
            reference,
            allowed_lateness_ms=int(settings.allowed_lateness_s * 1000),
            attribution_ms=int(settings.attribution_window_s * 1000),
        )


def update(policy: Policy, profile: Profile, event: dict[str, Any]) -> dict[str, Any] | None:
    """Fold ``event`` into ``profile``; return a moment if one fires."""
    if event["kind"] in BEHAVIOUR:
        add_to_tiles(profile, event)
    if event["kind"] == "location":
        update_visit(profile, event, policy.reference.current)
        profile["n"] += 1
    elif event["kind"] == "absorb":
        source = upgraded(event["profile"])
        merge_profiles(profile, source)
        merge_features(profile, source)
    else:
        apply_event(profile, event)
    rule = policy.rules.rules.store_entry
    if not rule.enabled:
        return None
    before = profile["moments"].get(STORE_ENTRY)
    moment = store_entry(
        profile,
        recent_interest_ms=rule.recent_interest_ms,
        cooldown_ms=rule.cooldown_ms,
        opt_out_traits=policy.rules.opt_out_traits,
    )
    return None if moment is None else judged(policy.rules, profile, moment, before)


def judged(
    rules: Rules, profile: Profile, moment: dict[str, Any], before: int | None
) -> dict[str, Any]:
    """The moment, marked ``suppressed`` if policy holds its offer back (agents/rules.py).

    ``before`` is the rule's last moment time before this one: when nothing
    is sent (quiet hours, a cap), the cooldown does not start.
    """
    reason = suppression(profile, moment, rules)
    if reason is not None:
        moment["suppressed"] = reason
    if reason in ("quiet_hours", "frequency_cap"):
        if before is None:
            del profile["moments"][moment["type"]]
        else:
            profile["moments"][moment["type"]] = before
    return moment


def timer_key(due: int, rule: str, user: str) -> bytes:
    return TIMER_PREFIX + f"{due:013d}:{rule}:{user}".encode()


def parse_timer(key: bytes) -> tuple[int, str, str]:
    """(due, rule, profile id) of a timer's key."""
    due, rule, user = key[len(TIMER_PREFIX) :].decode().split(":", 2)
    return int(due), rule, user


def key_user(key: bytes) -> str:
    """The profile id a table key belongs to (a timer's, or a profile's own)."""
    if key.startswith(TIMER_PREFIX):
        return key[len(TIMER_PREFIX) :].decode().split(":", 2)[-1]
    return key.decode()


class Fold:
    """One bundle's effect: profiles touched, and what to send or dead-letter."""

    def __init__(self, load: Callable[[str], Profile | None], policy: Policy) -> None:
        self._load = load
        self.policy = policy
        self.profiles: dict[str, Profile] = {}
        self.dirty: set[str] = set()
        self.moments: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.timers: set[tuple[int, str, str]] = set()  # (due, rule, profile id)
        self.forwards: list[dict[str, Any]] = []
        self.dead: list[tuple[dict[str, Any], str, str]] = []
        self.applied = 0
        self.duplicates = 0
        self.merges: Counter[str] = Counter()
        self.outcomes: list[dict[str, Any]] = []  # joined to moments (agents/attribution.py)
        self.unattributed: Counter[str] = Counter()

    def profile(self, key: str) -> Profile:
        profile = self.profiles.get(key)
        if profile is None:
            profile = self._load(key) or new_profile(key)
            self.profiles[key] = profile
        return profile

    def apply(self, event: dict[str, Any]) -> None:
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
        elif (late := lateness(profile, event)) > (allowed := self.policy.allowed_lateness_ms):
            self.dirty.add(key)  # the id is remembered: a resend is a duplicate
            reason = (
                f"{event['kind']} event is {late / 60_000:.0f} min older than this person's "
                f"latest; windows accept up to {allowed // 60_000} min"
            )
            self.dead.append((event, "too_late", reason))
        else:
            self.dirty.add(key)
            if event["kind"] == "absorb":
                self.merges["merged"] += 1
            else:
                self.applied += 1
            carts, visits = event["kind"] in CART_KINDS, event["kind"] in VISIT_KINDS
            cart_before = cart_changed_at(profile) if carts else None
            visit_before = last_store_visit(profile) if visits else None
            joined, unattributed = join(profile, event, self.policy.attribution_ms)
            self.outcomes += joined
            if unattributed:
                self.unattributed[unattributed] += 1
            moment = update(self.policy, profile, event)
            rules = self.policy.rules.rules
            if moment is not None:
                self._record(profile, event, moment)
            if carts and (cart_after := cart_changed_at(profile)) not in (None, cart_before):
                self.timers.add((cart_after + rules.cart_abandoned.idle_ms, CART_ABANDONED, key))
            if visits and (visit_after := last_store_visit(profile)) not in (None, visit_before):
                self.timers.add((visit_after + rules.win_back.lapsed_ms, WIN_BACK, key))

    def fire(self, rule: str, key: str, now: int) -> None:
        """A timer of ``rule`` for ``key`` ran out: judge the rule at ``now``."""
        profile = self.profile(key)
        if "merged_into" in profile:
            return  # the profile moved, with its cart and visits, and timers of its own
        rules = self.policy.rules
        if rule == CART_ABANDONED and rules.rules.cart_abandoned.enabled:
            cart = rules.rules.cart_abandoned
            before = profile["moments"].get(CART_ABANDONED)
            moment = cart_abandoned(
                profile, now, idle_ms=cart.idle_ms, cooldown_ms=cart.cooldown_ms,
                opt_out_traits=rules.opt_out_traits,
            )  # fmt: skip
        elif rule == WIN_BACK and rules.rules.win_back.enabled:
            back = rules.rules.win_back
            held = profile.get("last_store")
            if held and now < held[2] + back.lapsed_ms:  # the visit went on: wait for its end
                self.timers.add((held[2] + back.lapsed_ms, WIN_BACK, key))
                self.dirty.add(key)
                return
            before = profile["moments"].get(WIN_BACK)
            moment = win_back(
                profile, now, lapsed_ms=back.lapsed_ms, cooldown_ms=back.cooldown_ms,
                opt_out_traits=rules.opt_out_traits,
            )  # fmt: skip
        else:
            return
        if moment is not None:
            self.dirty.add(key)
            trigger = {"ts": moment["event_ts"], "at": now, "timer": True}
            self._record(profile, trigger, judged(rules, profile, moment, before))

    def changes(self) -> list[tuple[bytes, bytes | None]]:
        """The table writes: each changed profile once, and the timers set."""
        written: list[tuple[bytes, bytes | None]] = [
            (key.encode(), dumps(self.profiles[key])) for key in self.dirty
        ]
        return written + [(timer_key(due, rule, key), b"") for due, rule, key in self.timers]

    def _record(self, profile: Profile, event: dict[str, Any], moment: dict[str, Any]) -> None:
        moment["profile"] = loads(dumps(profile))  # as it is now, not at bundle end
        moment["features"] = features(profile, moment["event_ts"], self.policy.reference.current)
        moment["variant"] = variant_for(moment["user"], moment["type"])
        group = group_of(moment)
        if group is not None:
            remember_offer(profile, offer_id(moment["id"]), moment["type"], moment["event_ts"],
                           moment["variant"], group)  # fmt: skip
        self.moments.append((event, moment))

    def _merge(self, profile: Profile, event: dict[str, Any]) -> None:
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

    def _revive(self, stub: Profile, event: dict[str, Any]) -> None:
        """``A`` merged into ``B``, then ``B`` into ``A``: ``A`` takes it all back."""
        key = stub["user"]
        profile = upgraded(dict(event["profile"], user=key))
        profile["ids"] = [i for i in profile["ids"] if i != key]
        if event["from"] not in profile["ids"]:
            profile["ids"].insert(0, event["from"])
        self.profiles[key] = profile
        self.dirty.add(key)
        self.merges["merged"] += 1

    def _forward(self, event: dict[str, Any], into: str) -> None:
        hops = event.get("hops", 0) + 1
        if hops > MAX_HOPS:
            self.merges["loop"] += 1
            reason = (
                f"event for {event['user']!r} was forwarded {MAX_HOPS} times: "
                "its ids are merged into each other"
            )
            self.dead.append((event, "identity_loop", reason))
            return
        self.forwards.append(dict(event, user=into, hops=hops))


def expired(entries: list[tuple[bytes, bytes]], now: int, ttl_ms: int) -> list[bytes]:
    """Keys of the profiles (and merge stubs) without an event for longer than ``ttl_ms``."""
    return [key for key, value in entries if now - loads(value).get("updated", 0) > ttl_ms]


class ContextStage:
    """The context agent's I/O around the fold: the table, ticks, output."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.policy = Policy.of(rt.settings, rt.rules, rt.reference)
        self.ttl_ms = int(rt.settings.profile_ttl_s * 1000)
        self._swept: dict[int, bytes] = {}  # per partition, the last key the sweep read

    def loader(self, partition: int) -> Callable[[str], Profile | None]:
        """Reads profiles of ``partition`` (the bundle's) from the table."""
        profiles = self.rt.profiles

        def load(key: str) -> Profile | None:
            stored = read(profiles, partition, key.encode())
            return upgraded(loads(stored)) if stored else None

        return load

    async def fold_bundle(
        self, partition: int, events: list[dict[str, Any]], where: Any
    ) -> Awaitable[Any]:
        """Fold a bundle's events into ``partition``'s profiles, write them, emit the
        moments; returns what is left to land. The caller holds the in-process lock.

        ``where`` is the bundle's record (or its :class:`Placed`), for dead letters.
        """
        fold = Fold(self.loader(partition), self.policy)
        for event in events:
            try:
                fold.apply(event)
            except Exception as exc:  # a bug must not lose the event
                log.exception("context update failed for event %s", event.get("id"))
                fold.dead.append((event, "internal_error", f"state update failed: {exc!r}"))
        written = await write_batch(self.rt.app, self.rt.profiles, partition, fold.changes())
        if events:  # one bundle's events share their ingest time
            self.rt.metrics.stage_latency.labels("ingest_to_state").observe(
                max(0, now_ms() - events[0].get("at", now_ms())) / 1000
            )
        return await self._emit(where, fold, written)

    async def fold_in_process(
        self, partition: int, bundle: bytes
    ) -> tuple[list[tuple[str, bytes]], Placed, Awaitable[Any]] | None:
        """Fold ``bundle`` now if this worker owns ``partition`` (ingest's hand-off):
        the headers to produce it with, where it goes, and its work; None to
        leave it to the topic."""
        in_process, topic = self.rt.in_process, self.rt.topics.events.get_topic_name()
        tp = TP(topic, partition)
        if not in_process.owns(tp):
            return None
        events = loads(bundle)
        async with in_process.lock:
            if not in_process.owns(tp):  # a rebalance began while this waited
                return None
            placed = Placed(topic, partition)
            work = await self.fold_bundle(partition, events, placed)
        return in_process.remember(work, tp), placed, work

    async def handle(self, record: Any) -> Awaitable[Any]:
        """One bundle read from kairos.internal.events (or a tick)."""
        message, rt = record.message, self.rt
        folded = rt.in_process.claim(message)
        if folded is not None:
            rt.metrics.context_bundles.labels("in_process").inc()
            return folded
        try:
            events = loads(message.value)
        except Exception as exc:
            return await rt.dead_letters.send(
                message, code="internal_error", reason=f"unreadable bundle: {exc!r}",
                stage="context",
            )  # fmt: skip
        async with rt.in_process.lock:
            if events and events[0].get("kind") == SWEEP:
                fold = Fold(self.loader(message.partition), self.policy)
                return await self.tick(message, fold, events[0].get("ts") or now_ms())
            rt.metrics.context_bundles.labels("topic").inc()
            return await self.fold_bundle(message.partition, events, message)

    async def tick(self, message: Any, fold: Fold, now: int) -> Awaitable[Any]:
        """On a partition's tick: fire the timers due by ``now``, expire idle profiles."""
        partition, profiles = message.partition, self.rt.profiles
        changes: list[tuple[bytes, bytes | None]] = []
        until = TIMER_PREFIX + f"{now:013d};".encode()  # ';' sorts after ':'
        due = scan(profiles, partition, TIMER_PREFIX, SWEEP_BATCH, self._partition_of, until)
        for key, _value in due:
            changes.append((key, None))  # spent, whatever the rule decides
            try:
                _due, rule, user = parse_timer(key)
            except ValueError:
                log.warning("dropped an unreadable timer key %r", key)
                continue
            fold.fire(rule, user, now)
        changes += fold.changes()

        entries = scan(profiles, partition, self._swept.get(partition, TIMERS_END), SWEEP_BATCH,
                       self._partition_of)  # fmt: skip
        wrapped = entries[-1][0] if len(entries) == SWEEP_BATCH else TIMERS_END
        self._swept[partition] = wrapped
        gone = [k for k in expired(entries, now, self.ttl_ms) if k.decode() not in fold.dirty]
        if gone:
            self.rt.metrics.profiles_expired.inc(len(gone))
            log.info("expired %d profiles in partition %d", len(gone), partition)
        changes += [(key, None) for key in gone]
        written = await write_batch(self.rt.app, profiles, partition, changes)
        return await self._emit(message, fold, written)

    def _partition_of(self, key: bytes) -> int:
        return self.rt.partition_for(key_user(key))

    async def sweep_owned_partitions(self) -> None:
        """A sweep marker to each partition of the internal events this worker owns."""
        events = self.rt.topics.events
        name = events.get_topic_name()
        for tp in self.rt.app.assignor.assigned_actives():
            if tp.topic == name:
                marker = dumps([{"kind": SWEEP, "ts": now_ms()}])
                await events.send(value=marker, partition=tp.partition)

    async def _dead_letter_placed(
        self, placed: Placed, event: dict[str, Any], code: str, reason: str
    ) -> None:
        """A dead letter of a bundle folded in-process, once its offset is known."""
        where = SimpleNamespace(
            topic=placed.topic, partition=placed.partition, offset=await placed.offset, key=None
        )
        sent = await self.rt.dead_letters.send(
            where, code=code, reason=reason, stage="context", value=dumps(event)
        )
        await sent

    async def _emit(
        self, message: Any, fold: Fold, written: asyncio.Future[None]
    ) -> Awaitable[Any]:
        rt = self.rt
        metrics, topics = rt.metrics, rt.topics
        metrics.state_updates.inc(fold.applied)
        metrics.state_writes.inc(len(fold.dirty))
        if fold.duplicates:
            metrics.duplicates.inc(fold.duplicates)
        for outcome, count in fold.merges.items():
            metrics.identity_merges.labels(outcome).inc(count)
        sends: list[Any] = [written]
        for partition, bundle in bundles_by_partition(fold.forwards, rt.partition_for):
            sends.append(await topics.events.send(value=bundle, partition=partition))
        for event, code, reason in fold.dead:
            if isinstance(message, Placed):
                placed = self._dead_letter_placed(message, event, code, reason)
                sends.append(asyncio.ensure_future(placed))
            else:
                sends.append(
                    await rt.dead_letters.send(
                        message, code=code, reason=reason, stage="context", value=dumps(event)
                    )
                )
        for joined in fold.outcomes:
            metrics.attributed.labels(
                joined["moment"], joined["variant"] or "", joined["group"], joined["outcome"]
            ).inc()
            key = joined["user"].encode()
            sends.append(await topics.outcomes.send(key=key, value=dumps(joined)))
            metrics.events_out.labels("outcomes", joined["outcome"]).inc()
        for reason, count in fold.unattributed.items():
            metrics.unattributed.labels(reason).inc(count)
        detected = now_ms()
        for event, moment in fold.moments:
            moment.update(ingested_at=event["at"], detected_at=detected)
            metrics.moments.labels(moment["type"]).inc()
            if (group := group_of(moment)) is not None:
                metrics.attribution_moments.labels(moment["type"], moment["variant"], group).inc()
            if "suppressed" in moment:
                metrics.moments_suppressed.labels(moment["type"], moment["suppressed"]).inc()
            if not event.get("timer"):  # a timer's moment has no event to measure from
                metrics.stage_latency.labels("event_to_moment").observe(
                    max(0, detected - event["ts"]) / 1000
                )
            key = moment["user"].encode()
            sends.append(await topics.moments.send(key=key, value=dumps(moment)))
            metrics.events_out.labels("moments", moment["type"]).inc()
            # The offers stage (agents/delivery.py) claims it when it reads the moment.
            rt.early.start(moment, rt.partition_for(moment["user"]))
        return asyncio.gather(*sends)


def install(rt: Runtime) -> ContextStage:
    """Register the context agent and its sweep timer with ``rt.app``."""
    stage = ContextStage(rt)

    async def context(stream: Any) -> None:
        on_failure = rt.dead_letters.crash_worker
        await process_in_order(stream, stage.handle, window=IN_FLIGHT, on_failure=on_failure)

    rt.app.agent(rt.topics.events, name="kairos.context")(context)
    rt.app.timer(interval=rt.settings.sweep_interval_s)(stage.sweep_owned_partitions)
    return stage
