"""The LLM half of ``make bench``: kairos against the real vLLM CPU server.

One embedded broker, vLLM serving SmolLM2-135M-Instruct (the demo's model,
converted once into .kairos/models), one worker with the demo's settings.

- Batching: BURST shoppers walk into stores at the same moment. kairos's
  generations/s (pings produced to the last offer consumed from
  kairos.offers) is divided by a direct client's: the same prompts, built by
  the same code from the moments kairos published, sent straight to vLLM at
  the same concurrency (``KAIROS_LLM_MAX_IN_FLIGHT``).
- Live: BACKGROUND_RATE events/s of clickstream, and a shopper walking into
  a store every PING_EVERY_S. Per offer: end-to-end latency from the ping
  produced to the offer consumed, with and without the LLM's share (the
  request and the wait for an in-flight slot, from the offer's timings), and
  the latency kairos adds to the moment beyond that share. Feature lag:
  events produced but not yet in state, sampled ten times a second.
- Stalled: the same traffic with vLLM's processes stopped (SIGSTOP: sockets
  open, no answers). Feature lag and the in-flight requests are sampled as
  before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx

from bench.measure import BACKGROUND_LINGER_MS, BURST, STAND_IN_DELAY_S
from bench.session import Session
from models.server import ensure_model, start_llm_server
from streams.runtime.admin import create_topics
from streams.settings import Settings
from streams.tools.broker import start_broker
from streams.tools.process import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parents[1]


async def measure(settings: Settings, web: int, server: ManagedProcess) -> dict[str, float]:
    return await Session(settings, web, server).run()  # aiokafka wants a running loop


def llm(stack: tuple[Path, Settings, dict[str, str]]) -> dict[str, float]:
    """Start vLLM, the broker and a worker on ``stack`` and measure."""
    workdir, settings, env = stack
    folder = ensure_model(Settings(data_dir=ROOT / ".kairos"), workdir / "convert.log")
    settings = settings.model_copy(update={"llm_port": free_port()})
    web = settings.web_port
    with contextlib.ExitStack() as running:
        running.callback(shutil.rmtree, workdir, ignore_errors=True)
        # vLLM on the last core; kairos, the broker and the bench on the
        # others: in production the model has GPU machines of its own.
        cores = sorted(os.sched_getaffinity(0))
        running.callback(os.sched_setaffinity, 0, cores)
        os.sched_setaffinity(0, cores[-1:])
        os.environ["VLLM_SERVER_DEV_MODE"] = "1"  # for /reset_prefix_cache
        try:
            server = start_llm_server(settings, folder, workdir / "vllm.log")
        finally:
            os.sched_setaffinity(0, cores[:-1] or cores)
            del os.environ["VLLM_SERVER_DEV_MODE"]
        running.callback(server.stop)
        start_stack(running, workdir, settings, env)
        figures = asyncio.run(measure(settings, web, server))
    figures["llm_burst_moments"] = BURST
    figures["llm_max_in_flight"] = settings.llm_max_in_flight
    return figures


def stand_in(
    stack: tuple[Path, Settings, dict[str, str]],
    background_linger_ms: int = BACKGROUND_LINGER_MS,
    tag: str = "stand_in",
) -> dict[str, float]:
    """The live phase again, against a scripted OpenAI-compatible server that
    answers every request with a valid offer after STAND_IN_DELAY_S; figures
    keyed ``*_<tag>``.

    With vLLM on CPU, the model takes a core that on a GPU deployment it
    would not, and the broker, the worker and the bench share what is left;
    the stand-in leaves the whole machine to kairos, the broker and the
    producers, so what remains after the model's share is kairos's own."""
    from tests.support.fake_llm import Answer, FakeLLM

    workdir, settings, env = stack
    web = settings.web_port
    script = FakeLLM(lambda _request: Answer(delay_s=STAND_IN_DELAY_S))
    with contextlib.ExitStack() as running, script as server:
        running.callback(shutil.rmtree, workdir, ignore_errors=True)
        settings = settings.model_copy(update={"llm_url": server.url})
        start_stack(running, workdir, settings, env)
        figures = asyncio.run(_stand_in(settings, web, background_linger_ms, tag))
    figures[f"{tag}_delay_ms"] = STAND_IN_DELAY_S * 1000
    figures[f"{tag}_background_linger_ms"] = background_linger_ms
    return figures


async def _stand_in(
    settings: Settings, web: int, background_linger_ms: int, tag: str
) -> dict[str, float]:
    session = Session(settings, web, None, background_linger_ms)
    return await session.stand_in(tag)  # aiokafka wants a running loop


class _External:
    def stop(self) -> None:
        """The cluster is not the bench's to stop."""


def bench_broker(settings: Settings, workdir: Path) -> Any:
    """A fresh embedded broker for ``settings``, or nothing to start if they
    name a cluster (``BENCH_BROKER``); either way, something to ``stop()``."""
    if settings.embedded_broker:
        return start_broker(settings.broker_port, workdir / "kafka", workdir / "broker.log")
    return _External()


def start_stack(
    running: contextlib.ExitStack, workdir: Path, settings: Settings, env: dict[str, str]
) -> None:
    """The broker, the topics and a worker using ``settings``'s model server,
    stopped when ``running`` closes; returns once the worker is ready."""
    running.callback(bench_broker(settings, workdir).stop)
    asyncio.run(create_topics(settings))
    argv = [sys.executable, "-m", "streams.tools.cli", "worker"]
    worker_env = {**env, "KAIROS_LLM_URL": settings.llm_base_url}
    worker = ManagedProcess("worker", argv, workdir / "worker.log", env=worker_env)
    worker.start()
    running.callback(worker.stop)

    def ready() -> bool:
        try:
            url = f"http://127.0.0.1:{settings.web_port}/ready"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    worker.wait_ready(ready, timeout=120)


if __name__ == "__main__":
    from bench.stack import stack_settings

    for key, value in llm(stack_settings()).items():
        print(f"  {key:40} {value:g}")
