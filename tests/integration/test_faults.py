"""What kairos survives: an LLM server that goes away and comes back, one
that stops answering, a flood of poison, a broker that is not there yet.

(A worker killed mid-generation: test_offers.py; killed and restarted with
its disk deleted: test_recovery.py.)
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.codecs import loads
from streams.runtime.admin import create_topics
from streams.settings import settings_env
from streams.tools.broker import start_broker
from streams.tools.process import ManagedProcess, free_port
from tests.e2e.scenario import Shopper, shopper_events
from tests.support.fake_llm import Answer, FakeLLM
from tests.support.stack import REPO, Worker, consume, produce, settings_for_test

pytestmark = pytest.mark.broker


def visit(name: str) -> list[tuple[str, Any]]:
    return shopper_events(Shopper(name.lower(), name, "silver", 15, (("p-204", "outdoor"),)),
                          ping=f"ping-{name}")  # fmt: skip


def offers_for(settings: Any, users: int) -> dict[str, dict[str, Any]]:
    records = asyncio.run(consume(settings, settings.topics.offers, lambda r: len(r) >= users, 60))
    return {offer["user"]: offer for offer in map(loads, (r.value for r in records))}


def test_offers_fall_back_while_the_llm_server_is_gone_then_use_it_again(
    broker: str, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_for_test(broker, f"http://127.0.0.1:{port}/v1", "fake-llm", tmp_path)
    settings = settings.model_copy(update={
        # A cooldown longer than three visits take to go through on a loaded
        # machine, so the circuit is still open for the third.
        "llm_retries": 0, "llm_breaker_failures": 2, "llm_breaker_cooldown_s": 10.0,
    })  # fmt: skip
    worker = Worker(settings)
    worker.start()
    try:
        with FakeLLM(port=port):
            asyncio.run(produce(settings, visit("Ana")))
            assert offers_for(settings, 1)["ana"]["source"] == "model"
        # The server is gone: connection refused, then the circuit opens.
        for n, name in enumerate(("Ben", "Cleo", "Dev")):  # one after another
            asyncio.run(produce(settings, visit(name)))
            down = offers_for(settings, 2 + n)
        with FakeLLM(port=port):  # back, on the same address
            time.sleep(10.5)  # past the breaker's cooldown: the next request is its trial
            asyncio.run(produce(settings, visit("Eli")))
            back = offers_for(settings, 5)
        circuit = worker.counter("kairos_llm_circuit_state")
    finally:
        worker.stop()
    reasons = {user: down[user]["fallback_reason"] for user in ("ben", "cleo", "dev")}
    assert all(down[user]["source"] == "fallback" for user in reasons), down
    assert set(reasons.values()) <= {"unavailable", "circuit_open"}
    assert "circuit_open" in reasons.values(), reasons  # two failures opened it
    assert back["eli"]["source"] == "model", back["eli"]
    assert circuit == 0  # closed again


def test_a_stalled_llm_holds_neither_the_feature_path_nor_more_requests(
    broker: str, tmp_path: Path
) -> None:
    """Every request is held unanswered. State still takes every event, and
    no more than KAIROS_LLM_MAX_IN_FLIGHT requests are open."""
    names = [f"Shopper{n}" for n in range(8)]
    background = [
        ("clickstream", {"type": "page", "name": f"/p{n}", "userId": f"bg{n % 50}",
                         "messageId": f"bg-{n}"})
        for n in range(2000)
    ]  # fmt: skip
    with FakeLLM(lambda _: Answer(hold=True)) as llm:
        settings = settings_for_test(broker, llm.url, llm.model, tmp_path).model_copy(
            update={"llm_max_in_flight": 2, "llm_timeout_s": 600.0}
        )
        worker = Worker(settings)
        worker.start()
        try:
            events: list[tuple[str, Any]] = []
            for name in names:
                events += visit(name)
            asyncio.run(produce(settings, events + background))
            want = len(events) + len(background)
            applied = worker.wait_for("kairos_state_updates_total", want, seconds=60)
            worker.wait_for("kairos_llm_in_flight", 2, seconds=30)
            time.sleep(1.0)  # time for a third request to go out, if the bound let it
            in_flight = worker.counter("kairos_llm_in_flight")
            moments = worker.counter("kairos_moments_total")
            offers_while_held = worker.counter("kairos_offers_total")
            asked = len(llm.requests)
            llm.release()
            offers = offers_for(settings, len(names))
        finally:
            worker.stop()
    assert applied == want  # every event in state while no generation had finished
    assert moments == len(names) and offers_while_held == 0
    assert in_flight == 2 and asked == 2  # the rest wait for a slot, not the server
    assert sorted(offers) == sorted(name.lower() for name in names)


POISON = [
    b"",
    b"\xff\xfe",
    b'{"type": "track", "userId": "x", ',
    b'{"type": "track", "userId": "x", "properties": {}}',
    b"[1, 2, 3]",
    b'{"type": "teleport", "userId": "x"}',
    b'{"type": "page", "userId": "x", "timestamp": "yesterday-ish"}',
]


def test_a_flood_of_poison_all_lands_in_the_dead_letter_topic(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, "http://127.0.0.1:9/v1", "none", tmp_path)
    items: list[tuple[str, Any]] = []
    for n in range(1400):
        items.append(("clickstream", POISON[n % len(POISON)]))
        if n % 2 == 0:
            items.append(("clickstream", {"type": "page", "name": "/", "userId": f"u{n % 97}",
                                          "messageId": f"good-{n}"}))  # fmt: skip
    good = 700
    worker = Worker(settings)
    worker.start()
    try:
        asyncio.run(produce(settings, items))
        applied = worker.wait_for("kairos_state_updates_total", good, seconds=60)
        dead = asyncio.run(consume(settings, settings.topics.dlq, lambda r: len(r) >= 1400, 60))
        metrics = worker.metrics()
    finally:
        worker.stop()
    assert applied == good
    assert len(dead) == 1400
    assert sorted(r.value for r in dead) == sorted(POISON[n % len(POISON)] for n in range(1400))
    counted = sum(float(v) for v in re.findall(r"^kairos_dead_letters_total\{.*\} (\S+)$",
                                                   metrics, re.M))  # fmt: skip
    assert counted == 1400


def test_a_worker_waits_for_a_late_broker_and_names_one_that_never_comes(
    tmp_path: Path,
) -> None:
    port = free_port()
    settings = settings_for_test(f"127.0.0.1:{port}", "http://127.0.0.1:9/v1", "none", tmp_path)
    argv = [sys.executable, "-m", "streams.tools.cli", "worker"]
    # Patient enough for a broker that takes a minute to start on a loaded
    # machine; the default's schedule is checked below.
    patient = settings.model_copy(update={"broker_wait_s": 250.0})
    worker = ManagedProcess("worker", argv, tmp_path / "worker.log",
                            env=settings_env(patient), cwd=REPO)  # fmt: skip
    worker.start()
    try:
        # Two attempts fail; the broker starts (5-10 s, longer under load)
        # while the worker waits out its next retries (2, 4, 8, 16 s...).
        deadline = time.monotonic() + 60
        log_path = tmp_path / "worker.log"
        while not log_path.exists() or "retrying in 1.0 s" not in log_path.read_text():
            assert time.monotonic() < deadline, "the worker never retried"
            time.sleep(0.05)
        broker = start_broker(port, tmp_path / "kafka", tmp_path / "broker.log")
        failed_before_ready = log_path.read_text().count("not reachable")
        try:
            asyncio.run(create_topics(settings))
            url = f"http://127.0.0.1:{settings.web_port}/ready"
            worker.wait_ready(lambda: _ok(url), timeout=120)
        finally:
            worker.stop()
            broker.stop()
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert re.search(rf"Kafka at 127.0.0.1:{port} not reachable .* retrying in 0.5 s", log)
    assert "retrying in 1.0 s" in log
    # It went on at the first attempt after the broker came.
    assert log.count("not reachable") == failed_before_ready

    never = free_port()
    gone = settings.model_copy(update={"broker_url": f"127.0.0.1:{never}"})
    result = subprocess.run(
        argv, env=settings_env(gone), cwd=REPO, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert f"cannot reach Kafka at 127.0.0.1:{never} after 6 attempts" in result.stderr
    assert re.findall(r"retrying in (\S+) s", result.stderr) == ["0.5", "1.0", "2.0", "4.0", "8.0"]


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_worker_killed_mid_stream_loses_no_event_and_applies_none_twice(
    broker: str, tmp_path: Path
) -> None:
    """Events flow while the worker is SIGKILLed; a new one starts on the same
    disk. Every person's 24-hour count is exactly the events sent for them."""
    users, per_user = 40, 60
    now = int(time.time() * 1000)
    events = [
        ("clickstream", {"type": "track", "event": "Product Viewed", "userId": f"k{n % users}",
                         "messageId": f"kill-{n}", "timestamp": now - 600_000 + n,
                         "properties": {"product_id": "p-101", "category": "running"}})
        for n in range(users * per_user)
    ]  # fmt: skip
    settings = settings_for_test(broker, "http://127.0.0.1:9/v1", "none", tmp_path)
    worker = Worker(settings)
    worker.start()
    try:
        first, rest = events[: len(events) // 3], events[len(events) // 3 :]
        asyncio.run(produce(settings, first))
        worker.wait_for("kairos_state_updates_total", 1, seconds=30)
        producing = threading.Thread(target=lambda: asyncio.run(produce(settings, rest)))
        producing.start()
        worker.kill()  # mid-stream: some of the first third applied, the rest in flight
        producing.join(60)
        worker = Worker(settings)
        worker.start()
        api = f"http://127.0.0.1:{settings.web_port}/v1/profiles"
        counts: dict[str, int] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            counts = {
                f"k{u}": httpx.get(f"{api}/k{u}/features?at={now}", timeout=10).json()["features"][
                    "windows"
                ]["24h"]["events"]
                for u in range(users)
            }
            if all(c >= per_user for c in counts.values()):
                break
            time.sleep(0.5)
    finally:
        worker.stop()
    assert counts == {f"k{u}": per_user for u in range(users)}
