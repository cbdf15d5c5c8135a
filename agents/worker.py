"""The worker's factory: one call builds an app and wires every stage into it.

Nothing is built at import: :func:`create_app` reads nothing but its
arguments, so one process may build as many differently configured apps
as it likes (the tests do). The order is the boot order's:

1. the metrics registry, the Faust app (with its idempotent producer,
   streams/runtime/transport.py) and the topics bound to it;
2. the profiles table and the hand-offs between stages (agents/runtime.py);
3. the stages, each given the runtime: context (its agent and sweep timer),
   ingest (folding through context), offers delivery, the reference
   follower, the product embedder (its vectors beside the reference data)
   and the Profile API. Faust starts the services in that order
   and stops them in reverse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from agents import api, context, delivery, embedding, ingest, reference
from agents.handoffs import EarlyStarts, InProcess
from agents.rules import Rules, load_rules
from agents.runtime import Runtime
from streams.clients import Clients
from streams.metrics import Metrics
from streams.reference import ReferenceData
from streams.runtime.app import build_app
from streams.runtime.deadletters import DeadLetters
from streams.runtime.restore import ChangelogRestore, RestoringTable
from streams.runtime.topics import Topics
from streams.runtime.transport import App
from streams.settings import Settings


def create_app(settings: Settings, rules: Rules | None = None) -> Runtime:
    """A worker for ``settings`` and ``rules`` (``settings.rules_file``'s if
    None): its Faust app, with every agent, service and page registered."""
    rt = build_runtime(settings, load_rules(settings.rules_file) if rules is None else rules)
    stage = context.install(rt)
    ingest.install(rt, stage.fold_in_process)
    delivery.install(rt)
    follower = reference.install(rt)
    embedding.install(rt, settled=follower.settled)
    api.install(rt, stage)
    return rt


def profiles_table(
    app: App, topics: Topics, metrics: Metrics, settings: Settings, clients: Clients
) -> Any:
    """The profiles table, whose lost partitions are rebuilt from the changelog in bulk."""
    restore = ChangelogRestore(clients.consumer, metrics)
    table = RestoringTable(
        app,
        name="profiles",
        beacon=app.tables.beacon,
        partitions=settings.partitions,
        changelog_topic=topics.profiles_changelog,
        key_type=bytes,
        value_type=bytes,
        help="Per-user profile (agents/profile.py), orjson bytes keyed by profile id.",
        restore=restore,
    )
    return app.tables.add(table)


def build_runtime(settings: Settings, rules: Rules) -> Runtime:
    """The app, its topics and table, and what the stages share; no stage yet."""
    metrics = Metrics(CollectorRegistry())
    ready_checks: list[Callable[[], bool]] = []
    app = build_app(settings, metrics, ready_checks)
    topics = Topics.declare(app, settings)
    clients = Clients(settings)
    return Runtime(
        settings=settings,
        rules=rules,
        app=app,
        topics=topics,
        metrics=metrics,
        ready_checks=ready_checks,
        profiles=profiles_table(app, topics, metrics, settings, clients),
        reference=ReferenceData(settings.reference_dir),
        dead_letters=DeadLetters(app, topics.dlq, metrics),
        in_process=InProcess(app),
        # A moment is read within moments of its detection, unless the stage's
        # window is full: then within a few generations' time.
        early=EarlyStarts(
            limit=2 * settings.llm_max_in_flight,
            max_age_s=3 * settings.llm_timeout_s,
            metrics=metrics,
        ),
        clients=clients,
    )
