"""The real parts for integration and end-to-end tests.

A worker runs as a subprocess with its own app id, topic names, data
directory and web port, so tests share one broker without sharing state.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from streams import clients
from streams.runtime.admin import create_topics
from streams.settings import Settings, TopicNames, settings_env
from streams.tools.process import ManagedProcess, free_port
from streams.tools.producer import replay
from streams.tools.traffic import Planned

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "tests" / "support" / "rules.yaml"  # no holdout: every moment gets its offer


def settings_for_test(
    bootstrap: str, llm_url: str, llm_model: str, data_dir: Path, partitions: int = 2
) -> Settings:
    """Settings for one test: unique app id and topic names; the demo's defaults otherwise."""
    tag = "t" + uuid.uuid4().hex[:10]
    topics = TopicNames(
        clickstream=f"{tag}.clickstream",
        crm=f"{tag}.crm",
        location=f"{tag}.location",
        feedback=f"{tag}.feedback",
        offers=f"{tag}.offers",
        dlq=f"{tag}.dlq",
        outcomes=f"{tag}.outcomes",
        reference=f"{tag}.reference",
        internal_prefix=f"{tag}.internal.",
    )
    return Settings(
        broker_url=bootstrap,
        app_id=tag,
        topics=topics,
        partitions=partitions,
        store="rocksdb://",
        data_dir=data_dir,
        web_port=free_port(),
        llm_url=llm_url,
        llm_model=llm_model,
        llm_timeout_s=120.0,
        rules_file=RULES,
        # Timed moments fire when they are due whatever hour the tests run at
        # (tests/unit/test_sendtime.py covers quiet hours).
        send_quiet_hours="off",
    )


def run_cli(
    settings: Settings, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``kairos ARGS`` in a subprocess with ``settings``; its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "streams.tools.cli", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
        check=False,
    )


class Worker:
    """A `kairos worker` subprocess for one test's settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = ManagedProcess(
            "worker",
            [sys.executable, "-m", "streams.tools.cli", "worker"],
            settings.data_dir / "worker.log",
            env=settings_env(settings),
            cwd=REPO,
        )

    def start(self, timeout: float = 120.0) -> None:
        asyncio.run(create_topics(self.settings))
        self.process.start()
        url = f"http://127.0.0.1:{self.settings.web_port}/ready"
        self.process.wait_ready(lambda: _ok(url), timeout)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def pause(self) -> None:
        """SIGSTOP: alive, answering nothing, until :meth:`resume`."""
        self.process.pause()

    def resume(self) -> None:
        self.process.resume()

    def counter(self, name: str) -> float:
        """A counter's value (summed over labels) from /metrics, 0 if absent."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_for(self, name: str, at_least: float, seconds: float = 60.0) -> float:
        """Poll counter ``name`` until it reaches ``at_least``; return its value."""
        deadline = time.monotonic() + seconds
        value = self.counter(name)
        while value < at_least and time.monotonic() < deadline:
            time.sleep(0.1)
            value = self.counter(name)
        return value

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.settings.web_port}/metrics"
        return httpx.get(url, timeout=5).text


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def labelled(metrics: str, name: str, label: str) -> dict[str, float]:
    """Values of counter ``name`` by its one label ``label``, from /metrics text."""
    pattern = rf'^{name}{{{label}="([^"]*)"}} ([0-9.e+]+)$'
    return {m[1]: float(m[2]) for m in re.finditer(pattern, metrics, re.MULTILINE)}


async def produce(settings: Settings, items: list[tuple[str, dict[str, Any] | bytes]]) -> None:
    """Send (source, event) pairs in order; raw bytes are sent as they are."""
    await replay(settings, [Planned(0.0, source, event) for source, event in items])


async def consume(
    settings: Settings,
    topic: str,
    until: Callable[[list[Any]], bool],
    seconds: float,
) -> list[Any]:
    """Records of ``topic`` from the start, until ``until(records)`` or ``seconds`` pass.

    Read committed, as a consumer of kairos.offers must read: an offer is
    there once its transaction commits, and never if it aborts.
    """
    consumer = clients.consumer(
        settings,
        topic,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_wait_ms=50,
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + seconds
    try:
        while not until(records) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for partition_records in batch.values():
                records.extend(partition_records)
    finally:
        await consumer.stop()
    return records
