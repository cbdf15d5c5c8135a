"""The agents themselves, through Faust's test_context() on memory:// tables."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents.context import context, profiles
from agents.ingest import ingest_location
from streams import topics
from streams.codecs import dumps, header_map, loads

FLATIRON = (40.7411, -73.9897)


class Recorder:
    """Stands in for a topic's send: records what was sent, delivers at once."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, **kwargs: Any) -> asyncio.Future[None]:
        self.sent.append(kwargs)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.fixture
def outputs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    recorders = {"events": Recorder(), "moments": Recorder(), "dlq": Recorder()}
    for name, recorder in recorders.items():
        monkeypatch.setattr(getattr(topics, name), "send", recorder.send)
    return recorders


async def settle(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the agent did not get there")


def test_ingest_rekeys_valid_pings_and_dead_letters_bad_ones(outputs: dict[str, Recorder]) -> None:
    async def scenario() -> None:
        async with ingest_location.test_context() as agent:
            good = {"userId": "u1", "lat": 40.0, "lon": -73.0, "timestamp": "2026-11-21T10:00:00Z"}
            await agent.put(dumps(good), key=b"producer-key")
            await agent.put(b'{"userId": "u1", "lat": 95, "lon": 0}', key=None)
            await settle(lambda: outputs["events"].sent and outputs["dlq"].sent)

    asyncio.run(scenario())
    [forwarded] = outputs["events"].sent
    assert forwarded["key"] == b"u1"  # re-keyed by user, not by the producer's key
    event = loads(forwarded["value"])
    assert (event["kind"], event["user"], event["props"]["lat"]) == ("location", "u1", 40.0)
    [dead] = outputs["dlq"].sent
    assert dead["value"] == b'{"userId": "u1", "lat": 95, "lon": 0}'
    headers = header_map(dead["headers"])
    assert headers["kairos.dlq.reason"] == "'lat' must be between -90 and 90"
    assert headers["kairos.dlq.stage"] == "ingest"


def test_context_folds_events_and_emits_a_moment(outputs: dict[str, Recorder]) -> None:
    def event(n: int, kind: str, **fields: Any) -> bytes:
        base = {"v": 1, "id": f"e{n}", "kind": kind, "user": "u2", "ts": 1_800_000_000_000 + n,
                "at": 0}  # fmt: skip
        return dumps({**base, **fields})

    async def scenario() -> None:
        async with context.test_context() as agent:
            props = {"product_id": "p-101", "category": "running"}
            await agent.put(event(1, "track", name="Product Viewed", props=props), key=b"u2")
            ping = {"lat": FLATIRON[0], "lon": FLATIRON[1]}
            await agent.put(event(2, "location", props=ping), key=b"u2")
            await settle(lambda: outputs["moments"].sent)

    asyncio.run(scenario())
    [sent] = outputs["moments"].sent
    moment = loads(sent["value"])
    assert sent["key"] == b"u2"
    assert (moment["type"], moment["store_id"], moment["trigger_id"]) == (
        "store_entry",
        "s-flatiron",
        "e2",
    )
    assert moment["profile"]["views"][0][1] == "p-101"
    stored = loads(profiles[b"u2"])
    assert stored["visit"][0] == "s-flatiron" and stored["visit"][4] is True
