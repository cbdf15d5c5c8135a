"""Every topic kairos reads or writes, declared once.

The contract (names are settings, these are the defaults):

================================  =========  ==========================================
topic                             written by  holds
================================  =========  ==========================================
kairos.clickstream                producers  Segment Spec calls (track, page, identify...)
kairos.crm                        producers  CRM trait updates
kairos.location                   producers  location pings
kairos.feedback                   producers  offer feedback (delivered, opened, redeemed)
kairos.offers                     kairos     offer records for notification services
kairos.dlq                        kairos     dead letters: original bytes + reason headers
kairos.outcomes                   kairos     feedback and conversions joined to moments
kairos.internal.events            kairos     bundles of normalized events by profile id
kairos.internal.moments           kairos     detected moments keyed by profile id
kairos.internal.profiles-changelog kairos    changelog of the profiles table
================================  =========  ==========================================

Producers' keys are never relied on: ingest re-keys every event by profile
id onto ``kairos.internal.events``, so each user's state lives in one
partition. Every source topic's dead-letter twin is ``kairos.dlq``; a dead
letter's headers name the topic it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from streams.settings import Settings

DAY_MS = 24 * 3600 * 1000
# Set as max.message.bytes on every topic kairos writes: Kafka's default, so
# a record the worker's producer may send (its max_request_size, 1,000,000
# bytes) is taken wherever the cluster's default is lower. Source topics keep
# the producers' own limits: a larger record there is dead-lettered with its
# head (streams/runtime/deadletters.py).
MAX_MESSAGE_BYTES = 1_048_588
# Compaction never touches a topic's active segment, and Kafka's default
# segment is 1 GiB or 7 days: a worker rebuilding from the changelog would
# read every update since the last roll. Segments of 16 MiB (about 18,000
# profiles) or an hour bound that uncompacted head, and the cleaner starts
# once a quarter of the log is dirty (half by default).
COMPACTED_SEGMENT = {
    "segment.bytes": str(16 * 1024 * 1024),
    "segment.ms": str(3600 * 1000),
    "min.cleanable.dirty.ratio": "0.25",
}


@dataclass(frozen=True)
class TopicSpec:
    """What ``kairos topics create`` creates."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def internal_name(settings: Settings, name: str) -> str:
    return settings.topics.internal_prefix + name


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic, with partitions and configs, in creation order."""
    t, n = settings.topics, settings.partitions
    every = {"min.insync.replicas": str(settings.min_insync_replicas)}

    def kept(days: int) -> dict[str, str]:
        return {**every, "cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}

    def ours(config: dict[str, str]) -> dict[str, str]:
        return {**config, "max.message.bytes": str(MAX_MESSAGE_BYTES)}

    # Compacted topics keep the latest record per key for ever: the state itself.
    compacted = {**every, "cleanup.policy": "compact", "retention.ms": "-1", **COMPACTED_SEGMENT}
    return [
        TopicSpec(t.clickstream, n, kept(7)),
        TopicSpec(t.crm, n, kept(7)),
        TopicSpec(t.location, n, kept(7)),
        TopicSpec(t.feedback, n, kept(7)),
        TopicSpec(t.offers, n, ours(kept(7))),
        TopicSpec(t.dlq, n, ours(kept(30))),
        TopicSpec(t.outcomes, n, ours(kept(90))),
        TopicSpec(t.reference, 1, compacted),
        TopicSpec(internal_name(settings, "events"), n, ours(kept(7))),
        TopicSpec(internal_name(settings, "moments"), n, ours(kept(90))),
        TopicSpec(internal_name(settings, "profiles-changelog"), n, ours(compacted)),
    ]


@dataclass(frozen=True)
class Topics:
    """The topics the worker writes or Faust reads, bound to one app.

    Source topics are read by the ingest consumer (agents/ingest.py), not by
    Faust, and the reference topic by its follower (agents/reference.py).
    """

    offers: Any
    dlq: Any
    outcomes: Any
    events: Any
    moments: Any
    profiles_changelog: Any

    @classmethod
    def declare(cls, app: faust.App, settings: Settings) -> Topics:
        names = settings.topics
        return cls(
            offers=app.topic(names.offers),
            dlq=app.topic(names.dlq),
            outcomes=app.topic(names.outcomes),
            events=app.topic(internal_name(settings, "events")),
            moments=app.topic(internal_name(settings, "moments")),
            profiles_changelog=app.topic(
                internal_name(settings, "profiles-changelog"),
                partitions=settings.partitions,
                compacting=True,
            ),
        )
