"""What every benchmark phase starts from: its own folder, ports and settings."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from streams.settings import Settings, TopicNames, settings_env
from streams.tools.process import free_port

# A Kafka cluster (host:port,...) to measure against instead of a fresh
# embedded Kafka for each phase.
BROKER = os.environ.get("BENCH_BROKER") or None
ROOT = Path(__file__).resolve().parents[1]
EVENTS = 300_000
USERS = 20_000
RUNS = 3
RESTART_USERS = 100_000


def stack_settings() -> tuple[Path, Settings, dict[str, str]]:
    """A scratch folder, free ports, the demo's settings otherwise, and a
    worker's env. With ``BENCH_BROKER``, that Kafka cluster, and topics and
    a consumer group named for this phase alone."""
    workdir = Path(tempfile.mkdtemp(prefix="kairos-bench-"))
    local = {"web_port": free_port(), "data_dir": workdir}
    if BROKER is None:
        settings = Settings(broker_port=free_port(), **local)
    else:
        tag = f"kairos-bench-{uuid.uuid4().hex[:8]}"
        names = {name: f"{tag}.{name}" for name in TopicNames.model_fields}
        names["internal_prefix"] = f"{tag}.internal."
        settings = Settings(broker_url=BROKER, app_id=tag, topics=TopicNames(**names), **local)
    return workdir, settings, settings_env(settings)
