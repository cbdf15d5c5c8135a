"""What the stages of one worker share, built once and passed to each stage.

Nothing here is a module global: :func:`agents.worker.create_app` builds one
:class:`Runtime` per app, so a test can build as many differently configured
apps as it likes in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.handoffs import EarlyStarts, InProcess
from agents.rules import Rules
from streams.clients import Clients
from streams.keys import Partitioner
from streams.metrics import Metrics
from streams.reference import ReferenceData
from streams.runtime.deadletters import DeadLetters
from streams.runtime.topics import Topics
from streams.settings import Settings


@dataclass
class Runtime:
    """One worker's shared state: its app, topics, table, metrics registry,
    reference data, Kafka client factory, and the hand-offs between stages
    with their lock.

    - ``in_process`` (ingest -> context) and its ``lock``, taken by both
      stages around a bundle's fold and writes;
    - ``early`` (context -> delivery): generations started at detection;
    - ``reference``: the stores and products in force, with ``vectors``, a
      unit vector per product (streams/vectors.py), kept by the product
      embedder (agents/embedding.py);
    - ``ready_checks``: more conditions for /ready, one per service.
    """

    settings: Settings
    rules: Rules
    app: Any
    topics: Topics
    metrics: Metrics
    ready_checks: list[Callable[[], bool]]
    profiles: Any
    reference: ReferenceData
    dead_letters: DeadLetters
    in_process: InProcess
    early: EarlyStarts
    clients: Clients
    partition_for: Partitioner = field(init=False)

    def __post_init__(self) -> None:
        self.partition_for = Partitioner(self.settings.partitions)
