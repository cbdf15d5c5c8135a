"""The early starts (agents/handoffs.py): generations handed from detection to
the delivery stage, and dropped when no lane here will claim them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.handoffs import EarlyStarts
from streams.metrics import Metrics


class Model:
    """Stands in for the offer writer: each generation records its moment and waits."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def write(self, moment: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(moment["id"])
        await asyncio.sleep(3600)
        return {}


@pytest.fixture
def model() -> Model:
    return Model()


def idle() -> EarlyStarts:
    return EarlyStarts(limit=4, max_age_s=60, metrics=Metrics(CollectorRegistry()))


def running(model: Model, owned: set[int]) -> EarlyStarts:
    early = idle()
    early.open(model.write, lambda partition: partition in owned)
    return early


def test_only_owned_unsuppressed_moments_start_and_each_is_claimed_once(model: Model) -> None:
    async def scenario() -> list[bool]:
        stopped = idle()
        stopped.start({"id": "m0"}, 0)  # the delivery stage is not running
        early = running(model, {0})
        early.start({"id": "m1"}, 0)
        early.start({"id": "m2"}, 1)  # another worker's partition
        early.start({"id": "m3", "suppressed": "holdout"}, 0)
        await asyncio.sleep(0)
        claimed = early.claim("m1")
        outcome = [claimed is not None, early.claim("m1") is None, early.claim("m2") is None]
        early.forget()
        return outcome

    assert asyncio.run(scenario()) == [True, True, True]
    assert model.asked == ["m1"]


def test_forget_drops_what_no_lane_here_will_claim(model: Model) -> None:
    async def scenario() -> list[bool]:
        owned = {0, 1}
        early = running(model, owned)
        early.start({"id": "m1"}, 0)
        parked = asyncio.get_running_loop().create_future()
        early.park("m2", parked, 1)
        owned.discard(1)  # partition 1 went to another worker
        early.forget()
        outcome = [early.claim("m2") is None, parked.cancelled()]
        kept = early.claim("m1")
        assert kept is not None  # still this worker's
        early.park("m1", kept, 0)
        early.max_age_s = -1.0  # and now unclaimed for too long
        early.forget()
        await asyncio.sleep(0)
        return [*outcome, early.claim("m1") is None, kept.cancelled()]

    assert asyncio.run(scenario()) == [True, True, True, True]
