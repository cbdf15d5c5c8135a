"""The LLM client: one long-lived async client for an OpenAI-compatible server.

vLLM batches the requests it has in flight, so the client keeps up to
``max_in_flight`` of them open at once. Each request has a deadline that
covers its retries; transport errors, timeouts and 5xx answers are retried
with exponential backoff; everything else fails at once. Errors are mapped
onto :class:`LLMError`, so callers handle one tree.

A circuit breaker stops asking a server that is down: after
``breaker_failures`` requests in a row fail (unreachable, 5xx or timeout),
requests fail at once for ``breaker_cooldown_s``, so callers fall back
without waiting out deadlines; then one trial request goes through, and its
outcome closes the circuit or opens it again.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from streams.errors import KairosError
from streams.metrics import Metrics


class LLMError(KairosError):
    """Generation failed; ``reason`` is a short code for metrics and records."""

    reason = "error"


class LLMTimeout(LLMError):
    reason = "timeout"


class LLMUnavailable(LLMError):
    """Connection refused or reset, or a 5xx answer."""

    reason = "unavailable"


class LLMBadResponse(LLMError):
    """A 4xx answer, or a body that is not a chat completion."""

    reason = "bad_response"


class CircuitOpen(LLMUnavailable):
    reason = "circuit_open"


CLOSED, HALF_OPEN, OPEN = 0, 1, 2  # the circuit-state gauge's values


class Breaker:
    """Closed, open after ``failures`` failures in a row, half-open after ``cooldown_s``."""

    def __init__(
        self, failures: int, cooldown_s: float, clock: Any = time.monotonic,
        on_change: Any = None,
    ) -> None:  # fmt: skip
        self.failures = failures
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.on_change = on_change
        self.state = CLOSED
        self._failed = 0
        self._opened_at = 0.0
        self._trial = False

    def allow(self) -> bool:
        """May a request go now? In half-open state only one trial at a time."""
        if self.state == OPEN and self.clock() - self._opened_at >= self.cooldown_s:
            self._set(HALF_OPEN)
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and not self._trial:
            self._trial = True
            return True
        return False

    def succeeded(self) -> None:
        self._failed, self._trial = 0, False
        self._set(CLOSED)

    def failed(self) -> None:
        self._failed += 1
        self._trial = False
        if self.state == HALF_OPEN or self._failed >= self.failures:
            self._opened_at = self.clock()
            self._set(OPEN)

    def _set(self, state: int) -> None:
        if state != self.state:
            self.state = state
            if self.on_change is not None:
                self.on_change(state)


def chat_body(
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int,
    temperature: float,
    json_schema: dict[str, Any] | None,
    stop: Sequence[str] = (),
) -> dict[str, Any]:
    """A chat-completions request; with a schema, vLLM's structured output holds to it."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
    }
    if stop:
        body["stop"] = list(stop)
    if json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "offer", "schema": json_schema},
        }
    return body


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    attempts: int
    finish_reason: str | None = None
    waited_s: float = 0.0  # for an in-flight slot, before the request was sent


class LLMClient:
    """Chat completions against ``base_url`` (for example ``http://vllm:8000/v1``).

    An https URL is verified against the system's CAs, or ``ca_file``'s.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: SecretStr | None = None,
        ca_file: Path | None = None,
        timeout_s: float = 30.0,
        retries: int = 2,
        max_in_flight: int = 4,
        metrics: Metrics | None = None,
        backoff_s: float = 0.2,
        breaker_failures: int = 5,
        breaker_cooldown_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # The key goes only into the header; httpx masks it in the headers' repr.
        headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key else {}
        self.model = model
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.metrics = metrics
        self._slots = asyncio.Semaphore(max_in_flight)
        self.breaker = Breaker(breaker_failures, breaker_cooldown_s, on_change=self._circuit)
        self._circuit(CLOSED)
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            limits=httpx.Limits(
                max_connections=max_in_flight, max_keepalive_connections=max_in_flight
            ),
            transport=transport,
            verify=ssl.create_default_context(cafile=ca_file) if ca_file else True,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        stop: Sequence[str] = (),
    ) -> Completion:
        """One completion, within the deadline, retried on transient failures."""
        body = chat_body(self.model, messages, max_tokens, temperature, json_schema, stop)
        asked = time.monotonic()
        async with self._slots:
            if not self.breaker.allow():
                self._count(CircuitOpen.reason)
                raise CircuitOpen("the LLM server failed repeatedly; not asking for a while")
            started = time.monotonic()
            self._in_flight(+1)
            try:
                completion = await asyncio.wait_for(self._with_retries(body), self.timeout_s)
            except TimeoutError:
                self.breaker.failed()
                self._count("timeout")
                raise LLMTimeout(f"no answer within {self.timeout_s:g} s") from None
            except (LLMUnavailable, LLMTimeout) as exc:
                self.breaker.failed()
                self._count(exc.reason)
                raise
            except LLMError as exc:
                self.breaker.succeeded()  # it answered: up, if not helpful
                self._count(exc.reason)
                raise
            finally:
                self._in_flight(-1)
            self.breaker.succeeded()
            self._observe(completion, time.monotonic() - started)
            return replace(completion, waited_s=started - asked)

    async def _with_retries(self, body: dict[str, Any]) -> Completion:
        started = time.monotonic()
        for attempt in range(1, self.retries + 2):
            try:
                return self._parse(await self._post(body), started, attempt)
            except (LLMUnavailable, LLMTimeout):
                if attempt > self.retries:
                    raise
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        try:
            response = await self._http.post("/chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise LLMTimeout(f"request timed out: {exc!r}") from None
        except httpx.TransportError as exc:
            raise LLMUnavailable(f"cannot reach the LLM server: {exc!r}") from None
        if response.status_code >= 500:
            raise LLMUnavailable(f"LLM server answered {response.status_code}")
        if response.status_code >= 400:
            raise LLMBadResponse(
                f"LLM server answered {response.status_code}: {response.text[:200]}"
            )
        return response

    def _parse(self, response: httpx.Response, started: float, attempt: int) -> Completion:
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
            return Completion(
                text=text,
                model=str(data.get("model") or self.model),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                seconds=time.monotonic() - started,
                attempts=attempt,
                finish_reason=choice.get("finish_reason"),
            )
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMBadResponse(f"not a chat completion: {exc!r}") from None

    def _circuit(self, state: int) -> None:
        if self.metrics:
            self.metrics.llm_circuit.set(state)

    def _in_flight(self, change: int) -> None:
        if self.metrics:
            self.metrics.llm_in_flight.inc(change)

    def _count(self, outcome: str) -> None:
        if self.metrics:
            self.metrics.llm_requests.labels(outcome).inc()

    def _observe(self, completion: Completion, seconds: float) -> None:
        if not self.metrics:
            return
        self._count("ok")
        self.metrics.llm_latency.observe(seconds)
        self.metrics.llm_tokens.labels("prompt").inc(completion.prompt_tokens)
        self.metrics.llm_tokens.labels("completion").inc(completion.completion_tokens)
