"""Profiles idle longer than the TTL are deleted, and stay deleted after recovery."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.codecs import now_ms
from tests.support.stack import Worker, produce, settings_for_test

pytestmark = pytest.mark.broker
NO_LLM = "http://127.0.0.1:9/v1"
DAY_MS = 86_400_000


def page(user: str, ts: int, n: int) -> tuple[str, dict[str, Any]]:
    body = {
        "type": "page",
        "name": "/",
        "userId": user,
        "timestamp": ts,
        "messageId": f"{user}-{n}",
    }
    return "clickstream", body


def status(port: int, user: str) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/v1/profiles/{user}/traits", timeout=5).status_code


def test_idle_profiles_expire_and_tombstones_survive_recovery(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path, partitions=2)
    settings = settings.model_copy(update={"profile_ttl_s": 86_400.0, "sweep_interval_s": 0.5})
    now = now_ms()
    idle = [f"idle-{n}" for n in range(5)]
    active = [f"active-{n}" for n in range(5)]
    items = [page(user, now - 3 * DAY_MS, 0) for user in idle]
    items += [page(user, now - 1000, 0) for user in active]
    worker = Worker(settings)
    worker.start()
    try:
        asyncio.run(produce(settings, items))
        assert worker.wait_for("kairos_state_updates_total", len(items)) == len(items)
        assert worker.wait_for("kairos_profiles_expired_total", len(idle)) == len(idle)
        port = settings.web_port
        assert [status(port, user) for user in idle] == [404] * len(idle)
        assert [status(port, user) for user in active] == [200] * len(active)

        worker.stop()  # commits: no sweep marker is replayed after the restart
        shutil.rmtree(settings.data_dir / "worker")  # back from the changelog alone
        # No sweep now: only the changelog's tombstones can keep them deleted.
        worker = Worker(settings.model_copy(update={"sweep_interval_s": 3600.0}))
        worker.start()
        assert [status(port, user) for user in idle] == [404] * len(idle)
        assert [status(port, user) for user in active] == [200] * len(active)
    finally:
        worker.stop()
