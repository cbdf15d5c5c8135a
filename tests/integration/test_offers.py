"""Offers when the model misbehaves, and across a worker crash: a live worker
against a scripted OpenAI-compatible server (tests/support/fake_llm.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from agents.coupons import coupon_code
from agents.moments import moment_id, offer_id
from streams.codecs import loads
from tests.e2e.scenario import Shopper, shopper_events
from tests.support.fake_llm import OK, Answer, FakeLLM, prompt_text
from tests.support.stack import Worker, consume, labelled, produce, settings_for_test

pytestmark = pytest.mark.broker


def shopper(user: str, name: str) -> Shopper:
    return Shopper(user, name, "silver", 15, (("p-204", "outdoor"),))


def offers_by_user(settings: Any, users: int, seconds: float) -> dict[str, list[dict[str, Any]]]:
    records = asyncio.run(
        consume(
            settings,
            settings.topics.offers,
            lambda r: len({loads(x.value)["user"] for x in r}) >= users,
            seconds,
        )
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        offer = loads(record.value)
        out.setdefault(offer["user"], []).append(offer)
    return out


FAULTS = {
    "Fiona": Answer(status=503),  # a 5xx, retried, then given up
    "Tomas": Answer(delay_s=30),  # no answer within the deadline
    "Beatriz": Answer(body=b"<html>bad gateway</html>"),  # not a chat completion
    "Ingrid": Answer(content='{"headline": "Hi", "message": '),  # a completion, not JSON
    "Mateo": OK,
}
EXPECTED = {
    "Fiona": "unavailable",
    "Tomas": "timeout",
    "Beatriz": "bad_response",
    "Ingrid": "invalid_json",
    "Mateo": None,
}


def by_name(request: dict[str, Any]) -> Answer:
    text = prompt_text(request)
    return next((answer for name, answer in FAULTS.items() if name in text), OK)


def test_each_fault_falls_back_with_its_reason(broker: str, tmp_path: Path) -> None:
    with FakeLLM(by_name) as llm:
        settings = settings_for_test(broker, llm.url, llm.model, tmp_path).model_copy(
            update={"llm_timeout_s": 2.0, "llm_retries": 1, "llm_breaker_failures": 100}
        )
        worker = Worker(settings)
        worker.start()
        try:
            events = []
            for name in FAULTS:
                events += shopper_events(shopper(name.lower(), name))
            asyncio.run(produce(settings, events))
            offers = offers_by_user(settings, len(FAULTS), seconds=60)
            metrics = worker.metrics()
        finally:
            worker.stop()
        asked = [prompt_text(r) for r in llm.requests]

    assert sorted(offers) == sorted(name.lower() for name in FAULTS)
    for name, reason in EXPECTED.items():
        [offer] = offers[name.lower()]
        assert offer["fallback_reason"] == reason, offer
        if reason is None:
            assert offer["source"] == "model"
            assert offer["model"] == "fake-llm"
            assert offer["headline"] == "Good to see you"
            assert offer["product_id"] == "p-204"
        else:
            assert offer["source"] == "fallback"
            assert offer["message"].startswith(f"Welcome in, {name}!"), offer["message"]
            assert offer["coupon"]["code"] == coupon_code(
                offer["offer_id"], settings.coupon_secret.get_secret_value()
            )
    # Only the 5xx is retried (once, as configured); a timeout is not retried
    # past the deadline, and answers that came back are not asked again.
    assert sum("Fiona" in text for text in asked) == 2
    assert sum("Beatriz" in text for text in asked) == 1
    assert sum("Ingrid" in text for text in asked) == 1
    fallbacks = {
        k: v for k, v in labelled(metrics, "kairos_llm_fallbacks_total", "reason").items() if v
    }
    assert fallbacks == {"unavailable": 1, "timeout": 1, "bad_response": 1, "invalid_json": 1}
    # Each generation started as its moment was detected; reading the moment
    # from the topic found it running (the prompts above were asked once).
    assert labelled(metrics, "kairos_offer_starts_total", "at") == {"detection": len(FAULTS)}


def test_offer_ids_stay_the_same_across_a_worker_crash(broker: str, tmp_path: Path) -> None:
    """Two shoppers get their offers; three are mid-generation when the worker
    is killed. The restarted worker writes those three, and whatever it
    writes again carries the same offer id and coupon."""
    first = ["Ana", "Ben"]
    held = ["Cleo", "Dev", "Eli"]
    hold = {"on": True}

    def script(request: dict[str, Any]) -> Answer:
        text = prompt_text(request)
        return Answer(hold=hold["on"] and any(name in text for name in held))

    with FakeLLM(script) as llm:
        settings = settings_for_test(broker, llm.url, llm.model, tmp_path)
        events = []
        for name in first + held:
            events += shopper_events(shopper(name.lower(), name), ping=f"ping-{name}")
        expected = {
            name.lower(): offer_id(
                moment_id("store_entry", name.lower(), "s-flatiron", f"ping-{name}")
            )
            for name in first + held
        }
        worker = Worker(settings)
        worker.start()
        try:
            asyncio.run(produce(settings, events))
            before = offers_by_user(settings, len(first), seconds=60)
            deadline = time.monotonic() + 60
            while not all(any(n in prompt_text(r) for r in llm.requests) for n in held):
                assert time.monotonic() < deadline, "the held generations never started"
                time.sleep(0.1)
            asked_before = len(llm.requests)
            worker.kill()  # SIGKILL with three generations in flight
        finally:
            worker.stop()
        hold["on"] = False
        llm.release()
        worker = Worker(settings)
        worker.start()
        try:
            after = offers_by_user(settings, len(first + held), seconds=60)
            starts = labelled(worker.metrics(), "kairos_offer_starts_total", "at")
        finally:
            worker.stop()
        asked_after = llm.requests[asked_before:]

    assert sorted(before) == sorted(name.lower() for name in first)
    assert sorted(after) == sorted(expected)
    secret = settings.coupon_secret.get_secret_value()
    for user, offers in after.items():
        assert {offer["offer_id"] for offer in offers} == {expected[user]}, offers
        assert {offer["coupon"]["code"] for offer in offers} == {
            coupon_code(expected[user], secret)
        }
    for name in held:  # generated again by the restarted worker, same id
        assert any(name in prompt_text(r) for r in asked_after), name
    # The restarted worker saw no moment detected: it started them from the topic.
    assert starts.get("detection", 0) == 0 and starts["topic"] >= len(held), starts
    for user, [offer] in before.items():
        assert offer["offer_id"] == expected[user]
