"""A switch in front of a real LLM server: the outage of a load balancer's backend.

Open, it passes each chat completion to the server behind it and its answer
back, unchanged. Closed, it answers 503, as a load balancer does when no
backend is up. It runs in a thread of the test process, on a real port, so
a worker reaches it over HTTP, and the real server keeps serving other tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from streams.tools.process import free_port


class LLMGate:
    """``with LLMGate(upstream) as gate:`` serves on ``gate.url``; ``gate.open = False``
    takes the LLM down."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.open = True
        self.answered: Counter[int] = Counter()  # the server behind's answers, by status
        self.last_error = b""  # its last answer that was not a 200, for failure messages
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> LLMGate:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=300))
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _chat(self, request: web.Request) -> web.Response:
        if not self.open or self._session is None:
            self.refused += 1
            return web.Response(status=503, text="no backend")
        headers = {"Content-Type": "application/json"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        url = f"{self.upstream}/chat/completions"
        try:
            async with self._session.post(url, data=await request.read(), headers=headers) as got:
                status, body = got.status, await got.read()
        except ClientError as exc:  # the server behind went away: a load balancer's 502
            status, body = 502, repr(exc).encode()
        self.answered[status] += 1
        if status != 200:
            self.last_error = body
        return web.Response(status=status, body=body, content_type="application/json")
