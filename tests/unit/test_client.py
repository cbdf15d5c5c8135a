"""The LLM client against a scripted server: retries, deadlines, bounds."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client import CollectorRegistry

from models.client import LLMBadResponse, LLMClient, LLMTimeout, LLMUnavailable
from streams.metrics import Metrics

OK = {"model": "m", "choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 5, "completion_tokens": 2}}  # fmt: skip


def client(handler, **kwargs) -> LLMClient:
    kwargs.setdefault("backoff_s", 0.001)
    return LLMClient("http://llm/v1", "m", transport=httpx.MockTransport(handler), **kwargs)


async def ask(c: LLMClient):
    try:
        return await c.chat([{"role": "user", "content": "hi"}], max_tokens=8, json_schema={})
    finally:
        await c.aclose()


def test_retries_5xx_then_succeeds_and_counts() -> None:
    calls = []
    metrics = Metrics(CollectorRegistry())

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503) if len(calls) < 3 else httpx.Response(200, json=OK)

    completion = asyncio.run(ask(client(handler, retries=2, metrics=metrics)))
    assert (completion.attempts, completion.prompt_tokens, completion.finish_reason) == (
        3,
        5,
        "stop",
    )
    body = calls[0].read()
    assert b'"response_format"' in body and b'"json_schema"' in body
    assert metrics.registry.get_sample_value("kairos_llm_requests_total", {"outcome": "ok"}) == 1
    assert metrics.registry.get_sample_value("kairos_llm_tokens_total", {"kind": "completion"}) == 2


def test_gives_up_after_bounded_retries() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("refused")

    with pytest.raises(LLMUnavailable):
        asyncio.run(ask(client(handler, retries=2)))
    assert len(calls) == 3


def test_client_errors_are_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(400, text="bad schema")

    with pytest.raises(LLMBadResponse, match="400"):
        asyncio.run(ask(client(handler)))
    assert len(calls) == 1


def test_body_that_is_not_a_completion() -> None:
    with pytest.raises(LLMBadResponse):
        asyncio.run(ask(client(lambda r: httpx.Response(200, json={"choices": []}))))


def test_deadline_covers_the_whole_request() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=OK)

    with pytest.raises(LLMTimeout):
        asyncio.run(ask(client(slow, timeout_s=0.2)))


def test_in_flight_requests_are_bounded_and_the_wait_is_reported() -> None:
    active = 0
    peak = 0
    gauge_peak = 0.0
    metrics = Metrics(CollectorRegistry())

    def gauge() -> float:
        return metrics.registry.get_sample_value("kairos_llm_in_flight") or 0.0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak, gauge_peak
        active += 1
        peak = max(peak, active)
        gauge_peak = max(gauge_peak, gauge())
        await asyncio.sleep(0.02)
        active -= 1
        return httpx.Response(200, json=OK)

    async def burst() -> list:
        c = client(handler, max_in_flight=3, metrics=metrics)
        try:
            return await asyncio.gather(*(c.chat([], max_tokens=8) for _ in range(12)))
        finally:
            await c.aclose()

    completions = asyncio.run(burst())
    assert peak == 3
    assert gauge_peak == 3
    assert gauge() == 0
    waits = sorted(c.waited_s for c in completions)
    # The last request waited for slots through three rounds of 20 ms sleeps;
    # the first three took free slots.
    assert waits[-1] >= 0.055
    assert max(waits[:3]) < waits[-1]


def test_circuit_opens_fails_fast_then_closes_after_a_good_trial() -> None:
    calls = []
    up = False
    now = [0.0]
    metrics = Metrics(CollectorRegistry())

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=OK) if up else httpx.Response(502)

    def state() -> float | None:
        return metrics.registry.get_sample_value("kairos_llm_circuit_state")

    async def scenario() -> list[str]:
        nonlocal up
        c = client(handler, retries=0, breaker_failures=3, breaker_cooldown_s=10, metrics=metrics)
        c.breaker.clock = lambda: now[0]
        outcomes = []

        async def one() -> None:
            try:
                await c.chat([{"role": "user", "content": "hi"}], max_tokens=8)
                outcomes.append("ok")
            except LLMUnavailable as exc:
                outcomes.append(exc.reason)

        for _ in range(5):
            await one()  # three failures open it; two fail at once
        assert state() == 2
        now[0] = 9.9
        await one()  # still open
        now[0] = 10.0
        await one()  # the trial: fails, open again for another 10 s
        now[0] = 15.0
        await one()
        up, now[0] = True, 20.0
        await one()  # the trial succeeds: closed
        await one()
        await c.aclose()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert outcomes == ["unavailable"] * 3 + ["circuit_open"] * 3 + ["unavailable"] + [
        "circuit_open", "ok", "ok",
    ]  # fmt: skip
    assert len(calls) == 3 + 1 + 2  # nothing was sent while the circuit was open
    assert state() == 0
    count = metrics.registry.get_sample_value
    assert count("kairos_llm_requests_total", {"outcome": "circuit_open"}) == 4


def test_a_bad_answer_does_not_open_the_circuit() -> None:
    async def scenario() -> int:
        c = client(lambda r: httpx.Response(200, json={"nope": 1}), breaker_failures=1)
        for _ in range(3):
            with pytest.raises(LLMBadResponse):
                await c.chat([{"role": "user", "content": "hi"}], max_tokens=8)
        await c.aclose()
        return c.breaker.state

    assert asyncio.run(scenario()) == 0
