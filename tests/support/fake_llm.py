"""A scriptable OpenAI-compatible chat server, for the faults a real one rarely shows.

It runs in a thread of the test process, on a real port, so a worker
subprocess reaches it over HTTP exactly as it reaches vLLM. ``script``
picks an :class:`Answer` for each request from the request body; the
default answers every request with a valid offer.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from streams.tools.process import free_port


@dataclass(frozen=True)
class Answer:
    """How to answer one request."""

    status: int = 200
    content: str | None = None  # the completion's text; None: a valid offer for the request
    body: bytes | None = None  # the raw HTTP body instead of a completion
    delay_s: float = 0.0
    hold: bool = False  # wait until release() is called


OK = Answer()


def valid_offer(request: dict[str, Any]) -> str:
    """An answer the guardrails accept, naming the first product the schema allows."""
    schema = request.get("response_format", {}).get("json_schema", {}).get("schema", {})
    products = schema.get("properties", {}).get("product_id", {}).get("enum") or []
    answer = {"headline": "Good to see you", "message": "Come and try them on today."}
    if products:
        answer["product_id"] = products[0]
    return orjson.dumps(answer).decode()


def prompt_text(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []))


class FakeLLM:
    """``with FakeLLM(script) as llm:`` serves on ``llm.url`` until the block ends."""

    def __init__(
        self, script: Callable[[dict[str, Any]], Answer] = lambda _: OK, port: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        self.script = script
        self.port = port or free_port()
        self.tls = tls  # a server context: serve https
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/v1"
        self.model = "fake-llm"
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []  # each request's Authorization header
        self._loop = asyncio.new_event_loop()
        self._released: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def release(self) -> None:
        """Let held requests answer, and stop holding new ones."""
        if self._released is not None:
            self._loop.call_soon_threadsafe(self._released.set)

    async def _start(self) -> None:
        self._released = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/health", lambda _: web.Response(text="ok"))
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.tls).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(body)
        self.authorizations.append(request.headers.get("Authorization", ""))
        answer = self.script(body)
        if answer.hold and self._released is not None:
            await self._released.wait()
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if answer.body is not None:
            return web.Response(status=answer.status, body=answer.body)
        if answer.status != 200:
            return web.Response(status=answer.status, text="fake failure")
        content = answer.content if answer.content is not None else valid_offer(body)
        return web.json_response(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
            }
        )
