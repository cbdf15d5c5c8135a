"""Context: per-user profiles, kept in a RocksDB table, and moment detection.

Reads kairos.internal.events (keyed by profile id, so the table partition
and the event partition agree), folds each event into the user's profile,
and on a location ping asks the moment rules whether to reach out. A moment
carries the profile as it was at that instant, so the offer stage needs no
second lookup.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from agents.moments import store_entry, update_visit
from agents.profile import apply_event, new_profile
from streams import topics
from streams.acks import process_in_order
from streams.app import app, metrics, settings
from streams.codecs import dumps, loads, now_ms
from streams.deadletters import crash_worker, dead_letter, nothing_to_wait_for
from streams.reference import cached_reference

log = logging.getLogger(__name__)

IN_FLIGHT = 2000

profiles = app.Table(
    "profiles",
    partitions=settings.partitions,
    changelog_topic=topics.profiles_changelog,
    key_type=bytes,
    value_type=bytes,
    help="Per-user profile (agents/profile.py), orjson bytes keyed by profile id.",
)


def update(profile: dict[str, Any], event: dict[str, Any]) -> dict[str, Any] | None:
    """Fold ``event`` into ``profile``; return a moment if one fires."""
    if event["kind"] == "location":
        update_visit(profile, event, cached_reference(settings.reference_dir))
    else:
        apply_event(profile, event)
    return store_entry(
        profile,
        recent_interest_ms=int(settings.recent_interest_s * 1000),
        cooldown_ms=int(settings.moment_cooldown_s * 1000),
    )


@app.agent(topics.events, name="kairos.context")
async def context(stream: Any) -> None:
    async def handle(record: Any) -> Awaitable[Any]:
        message = record.message
        try:
            event = loads(message.value)
            stored = profiles.get(message.key)
            profile = loads(stored) if stored else new_profile(event["user"])
            moment = update(profile, event)
            profiles[message.key] = dumps(profile)
            metrics.state_updates.inc()
        except Exception as exc:  # a bug must not lose the event
            log.exception("context update failed at %s/%s", message.topic, message.offset)
            return await dead_letter(
                message,
                code="internal_error",
                reason=f"state update failed: {exc!r}",
                stage="context",
            )
        if moment is None:
            return nothing_to_wait_for()
        detected = now_ms()
        moment.update(ingested_at=event["at"], detected_at=detected, profile=profile)
        metrics.moments.labels(moment["type"]).inc()
        metrics.stage_latency.labels("event_to_moment").observe(
            max(0, detected - event["ts"]) / 1000
        )
        return await topics.moments.send(key=message.key, value=dumps(moment))

    await process_in_order(stream, handle, window=IN_FLIGHT, on_failure=crash_worker)
