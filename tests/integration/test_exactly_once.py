"""Each offer exactly once on kairos.offers, for a read_committed consumer that
drops nothing: across SIGKILLs mid-generation and mid-delivery, across a
rebalance when a second worker joins, and across a paused worker that comes
back after its partitions were taken over.

The fake model answers each request after a pause, so that at any moment
some generations are in flight and some offers are on their way out when a
worker dies. What is checked is the offers stage's promise: every moment on
kairos.internal.moments (the stages before are at-least-once, so the same
moment can be there twice) has its offer on kairos.offers once. Counting is
done on every committed record of both topics, read to their ends once the
workers have stopped: a duplicate is counted, not dropped.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from agents.moments import moment_id, offer_id
from streams.codecs import loads
from streams.settings import Settings
from streams.tools.process import free_port
from tests.e2e.scenario import Shopper, shopper_events
from tests.support.fake_llm import Answer, FakeLLM
from tests.support.stack import Worker, labelled, produce, settings_for_test

pytestmark = pytest.mark.broker

ANSWER_S = 0.4  # each generation is in flight this long
KILLS = 5


def visits(names: list[str]) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    for name in names:
        shopper = Shopper(name.lower(), name, "silver", 15, (("p-204", "outdoor"),))
        events += shopper_events(shopper, ping=f"ping-{name}")
    return events


def expected_offers(names: list[str]) -> set[str]:
    """The offer ids of these shoppers' visits (offer ids are deterministic)."""
    return {
        offer_id(moment_id("store_entry", name.lower(), "s-flatiron", f"ping-{name}"))
        for name in names
    }


class Burst:
    """Store visits produced in the background, ``per_step`` every ``pause_s``,
    until the block ends; ``names`` holds the shoppers whose visits were sent."""

    def __init__(self, settings: Settings, prefix: str, per_step: int, pause_s: float):
        self.settings = settings
        self.prefix = prefix
        self.per_step = per_step
        self.pause_s = pause_s
        self.names: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Burst:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            step = [f"{self.prefix}{len(self.names) + n:04d}" for n in range(self.per_step)]
            asyncio.run(produce(self.settings, visits(step)))
            self.names += step
            self._stop.wait(self.pause_s)


def wanted(settings: Settings) -> set[str]:
    """The offer ids of the moments on the moments topic that should have one."""
    records = asyncio.run(_read_to_end(settings, f"{settings.topics.internal_prefix}moments"))
    moments = [loads(r.value) for r in records]
    return {offer_id(m["id"]) for m in moments if not m.get("suppressed")}


def settle(settings: Settings, seconds: float = 180) -> set[str]:
    """Wait until every moment so far has its offer, and no new moment came in
    the last second; the offer ids wanted then."""
    deadline, before = time.monotonic() + seconds, None
    while True:
        want = wanted(settings)
        offered = {loads(r.value)["offer_id"] for r in asyncio.run(_read_to_end(settings,
                   settings.topics.offers))}  # fmt: skip
        if want <= offered and want == before:
            return want
        assert time.monotonic() < deadline, f"{len(want - offered)} moments still without offer"
        before = want
        time.sleep(1.0)


async def _read_to_end(settings: Settings, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = consumer.assignment()
        while not partitions:
            await asyncio.sleep(0.05)
            partitions = consumer.assignment()
        ends = await consumer.end_offsets(list(partitions))
        deadline = time.monotonic() + 30
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            assert time.monotonic() < deadline, "the topic's end was never reached"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def committed_offer_ids(settings: Settings) -> Counter[str]:
    """How many times each offer id is on the topic, for a read_committed consumer."""
    records = asyncio.run(_read_to_end(settings, settings.topics.offers))
    return Counter(loads(r.value)["offer_id"] for r in records)


def offers_delivered(worker: Worker) -> float:
    """Offers this worker delivered, from its /metrics."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in worker.metrics().splitlines()
        if line.startswith("kairos_events_out_total{") and 'topic="offers"' in line
    )


def wait_for_requests(llm: FakeLLM, more: int) -> None:
    """Until ``more`` requests beyond those so far have reached the model."""
    asked, deadline = len(llm.requests), time.monotonic() + 60
    while len(llm.requests) < asked + more:
        assert time.monotonic() < deadline, "no generation started"
        time.sleep(0.02)


def duplicated(counts: Counter[str]) -> dict[str, int]:
    return {oid: n for oid, n in counts.items() if n > 1}


def check_exactly_once(settings: Settings, names: list[str]) -> None:
    """Every moment's offer on the topic once; the moments are the burst's."""
    want, counts = wanted(settings), committed_offer_ids(settings)
    assert not duplicated(counts), f"offers written more than once: {duplicated(counts)}"
    assert set(counts) == want  # none missing, none unexpected
    sent = expected_offers(names)
    assert want <= sent
    # Nearly every visit makes a moment (a ping folded before its shopper's
    # view, which came on another topic, makes none): the burst was real.
    assert len(want) >= len(sent) // 2, (len(want), len(sent))


def test_five_kills_during_a_burst_leave_every_offer_exactly_once(
    broker: str, tmp_path: Path
) -> None:
    rng = random.Random(7)
    with FakeLLM(lambda _: Answer(delay_s=ANSWER_S)) as llm:
        settings = settings_for_test(broker, llm.url, llm.model, tmp_path)
        worker = Worker(settings)
        worker.start()
        try:
            with Burst(settings, "Kay", per_step=2, pause_s=0.3) as burst:
                for _ in range(KILLS):
                    # Offers are being written and delivered: kill in the midst of it.
                    wait_for_requests(llm, 4)
                    time.sleep(rng.uniform(0, ANSWER_S))
                    worker.kill()
                    worker = Worker(settings)
                    worker.start()
                wait_for_requests(llm, 4)  # the burst goes on after the last restart
            settle(settings)
        finally:
            worker.stop()
    check_exactly_once(settings, burst.names)


def test_a_worker_joining_mid_burst_leaves_every_offer_exactly_once(
    broker: str, tmp_path: Path
) -> None:
    with FakeLLM(lambda _: Answer(delay_s=ANSWER_S)) as llm:
        settings = settings_for_test(broker, llm.url, llm.model, tmp_path / "one")
        second = settings.model_copy(update={"web_port": free_port(), "data_dir": tmp_path / "two"})
        workers = [Worker(settings), Worker(second)]
        workers[0].start()
        try:
            with Burst(settings, "Jo", per_step=2, pause_s=0.3) as burst:
                wait_for_requests(llm, 8)
                workers[1].start()  # the partitions move while offers are in flight
                wait_for_requests(llm, 8)
            settle(settings)
            delivered = [offers_delivered(worker) for worker in workers]
        finally:
            for worker in reversed(workers):
                worker.stop()

    assert all(n > 0 for n in delivered), delivered  # both workers delivered offers
    check_exactly_once(settings, burst.names)


def test_a_paused_worker_that_comes_back_is_fenced_and_writes_no_offer_twice(
    broker: str, tmp_path: Path
) -> None:
    """The first worker stops answering (SIGSTOP) in the midst of the burst;
    its session expires and the second takes its partitions over, reading
    from their last commits. Then the first comes back, still holding what
    it had in hand: whatever it sends for those partitions is fenced."""
    hold = {"on": False}
    with FakeLLM(lambda _: Answer(delay_s=ANSWER_S, hold=hold["on"])) as llm:
        settings = settings_for_test(broker, llm.url, llm.model, tmp_path / "one")
        second = settings.model_copy(update={"web_port": free_port(), "data_dir": tmp_path / "two"})
        workers = [Worker(settings), Worker(second)]
        workers[0].start()
        try:
            with Burst(settings, "Zed", per_step=2, pause_s=0.3) as burst:
                wait_for_requests(llm, 8)
                workers[1].start()
                wait_for_requests(llm, 8)
                hold["on"] = True  # answers wait: the first worker has generations in hand
                time.sleep(2 * ANSWER_S)  # the requests not held are answered by now
                in_hand = workers[0].wait_for("kairos_llm_in_flight", 1)
                workers[0].pause()
                hold["on"] = False
                llm.release()  # answered while it sleeps
                owned = workers[1].wait_for("kairos_offer_partitions", settings.partitions)
                wait_for_requests(llm, 4)
                workers[0].resume()
                back = workers[0].wait_for("kairos_offer_partitions", 1)
                wait_for_requests(llm, 8)
            settle(settings)
            outcomes = labelled(workers[0].metrics(), "kairos_offer_transactions_total", "outcome")
        finally:
            for worker in reversed(workers):
                worker.stop()

    assert in_hand >= 1 and owned == settings.partitions and back >= 1
    check_exactly_once(settings, burst.names)
    assert outcomes.get("fenced", 0) >= 1, outcomes  # it did send, and was refused
