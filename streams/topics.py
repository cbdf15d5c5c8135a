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

from streams.app import app
from streams.settings import Settings, get_settings

DAY_MS = 24 * 3600 * 1000


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
    retention = {"retention.ms": str(7 * DAY_MS)}
    return [
        TopicSpec(t.clickstream, n, retention),
        TopicSpec(t.crm, n, retention),
        TopicSpec(t.location, n, retention),
        TopicSpec(t.feedback, n, retention),
        TopicSpec(t.offers, n, retention),
        TopicSpec(t.dlq, n, {"retention.ms": str(30 * DAY_MS)}),
        TopicSpec(t.outcomes, n, {"retention.ms": str(90 * DAY_MS)}),
        TopicSpec(t.reference, 1, {"cleanup.policy": "compact"}),
        TopicSpec(internal_name(settings, "events"), n, retention),
        TopicSpec(internal_name(settings, "moments"), n, {"retention.ms": str(90 * DAY_MS)}),
        TopicSpec(internal_name(settings, "profiles-changelog"), n, {"cleanup.policy": "compact"}),
    ]


_settings = get_settings()
_names = _settings.topics

# Source topics are read by the ingest consumer (agents/ingest.py), not by Faust.
offers = app.topic(_names.offers)
dlq = app.topic(_names.dlq)
outcomes = app.topic(_names.outcomes)
events = app.topic(internal_name(_settings, "events"))
moments = app.topic(internal_name(_settings, "moments"))
profiles_changelog = app.topic(
    internal_name(_settings, "profiles-changelog"), partitions=_settings.partitions, compacting=True
)
