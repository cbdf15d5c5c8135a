"""The context agent itself, through Faust's test_context() on a memory:// table."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agents import context as context_module
from agents import output
from agents.handoffs import Placed
from agents.runtime import Runtime
from agents.worker import create_app
from streams.codecs import dumps, loads
from streams.keys import Partitioner
from streams.settings import Settings

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
def worker() -> Runtime:
    return create_app(Settings(store="memory://"))


@pytest.fixture
def outputs(monkeypatch: pytest.MonkeyPatch, worker: Runtime) -> dict[str, Recorder]:
    recorders = {"events": Recorder(), "moments": Recorder(), "dlq": Recorder()}
    for name, recorder in recorders.items():
        monkeypatch.setattr(getattr(worker.topics, name), "send", recorder.send)
    changelog = Recorder()

    async def write_batch(app: Any, table: Any, partition: int, changes: Any) -> Any:
        for key, value in changes:
            table.data[key] = value  # the store; no producer runs in test_context()
        return await changelog.send(partition=partition, changes=changes)

    monkeypatch.setattr(context_module, "write_batch", write_batch)
    recorders["changelog"] = changelog
    return recorders


async def settle(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the agent did not get there")


def test_context_folds_events_and_emits_a_moment(
    worker: Runtime, outputs: dict[str, Recorder]
) -> None:
    def event(n: int, kind: str, **fields: Any) -> bytes:
        base = {"v": 1, "id": f"e{n}", "kind": kind, "user": "u2", "ts": 1_800_000_000_000 + n,
                "at": 0}  # fmt: skip
        return dumps({**base, **fields})

    async def scenario() -> None:
        async with worker.app.agents["kairos.context"].test_context() as agent:
            props = {"product_id": "p-101", "category": "running"}
            view = event(1, "track", name="Product Viewed", props=props)
            ping = event(2, "location", props={"lat": FLATIRON[0], "lon": FLATIRON[1]})
            await agent.put(b"[" + view + b"," + ping + b"]", key=None)  # one bundle
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
    assert moment["features"]["windows"]["1h"] == {"events": 2, "products": 1, "categories": 1}
    [write] = outputs["changelog"].sent  # one write for the user's two events
    # ...the win-back timer the store visit set, due 30 days after it, and the
    # partition's clock, moved to the newest event time.
    assert [key for key, _ in write["changes"]] == [
        b"u2", b"\x00due:%d:win_back:u2" % (moment["event_ts"] + 30 * 86_400_000),
        b"\x00clock:0",
    ]  # fmt: skip
    assert loads(worker.profiles[b"\x00clock:0"]) == [1_800_000_000_002, 0]
    stored = loads(worker.profiles[b"u2"])
    assert stored["visit"][0] == "s-flatiron" and stored["visit"][4] is True


def test_two_apps_in_one_process_share_nothing() -> None:
    one = create_app(Settings(store="memory://", app_id="one", partitions=2))
    two = create_app(Settings(store="memory://", app_id="two", partitions=8))
    assert (one.app.conf.id, two.app.conf.id) == ("one", "two")
    assert one.profiles is not two.profiles and one.in_process is not two.in_process
    one.metrics.duplicates.inc(3)
    counted = [rt.metrics.registry.get_sample_value("kairos_duplicates_total") for rt in (one, two)]
    assert counted == [3.0, 0.0]
    assert (one.partition_for("u2"), two.partition_for("u2")) == (
        Partitioner(2)("u2"), Partitioner(8)("u2"),
    )  # fmt: skip


def test_a_dead_letter_of_a_bundle_folded_in_process_names_where_it_landed(
    worker: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[Any, str]] = []

    async def send(message: Any, *, code: str, **kwargs: Any) -> asyncio.Future[None]:
        sent.append(((message.topic, message.partition, message.offset), code))
        return await Recorder().send()

    monkeypatch.setattr(worker.dead_letters, "send", send)

    async def scenario() -> None:
        placed = Placed("kairos.internal.events", 3)
        event = {"kind": "page", "user": "u", "ts": 1}
        waiting = await output._dead_letter(worker, placed, event, "identity_loop", "a loop")
        placed.offset.set_result(41)  # once ingest's produce of the bundle lands
        await waiting

    asyncio.run(scenario())
    assert sent == [(("kairos.internal.events", 3, 41), "identity_loop")]
