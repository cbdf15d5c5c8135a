"""Does `kairos eval` keep the model server as busy as a direct client would?

The same moments, in the same run, side by side: `kairos eval`'s own path
(streams/tools/evaluate.py ``judge_all``: context from each snapshot, the
prompt, models/client.py, the guardrails) against a plain loop of the same
prompts sent through models/client.py by as many tasks as the concurrency.
Each side's figure is generations per second (answers received / wall time);
the rounds alternate which side goes first, and vLLM's prefix cache is
emptied before each side (when the server allows it), so neither reuses the
other's prompts. The ratio is the median of eval / direct over the rounds.

    python -m bench.eval_rate MOMENTS.jsonl --endpoint URL --model NAME
    python -m bench.eval_rate MOMENTS.jsonl --stand-in   # a scripted server, 50 ms a request,
                                                         # in a process of its own

MOMENTS.jsonl is what `kairos dataset export` writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from agents.coupons import discount_pct
from agents.moment_types import prompt_for
from agents.offers import OfferWriter
from agents.rules import load_rules
from models.client import LLMClient
from streams.metrics import Metrics
from streams.reference import ReferenceData
from streams.settings import Settings
from streams.tools import evaluate
from streams.tools.process import free_port

ROOT = Path(__file__).resolve().parents[1]


async def eval_side(settings: Settings, options: Any, chosen: list[evaluate.Case]) -> float:
    rules = load_rules(settings.rules_file)
    reference = ReferenceData(settings.reference_dir)
    writer = OfferWriter(settings, rules, reference, Metrics(CollectorRegistry()))
    client = evaluate.client_for(settings, options.endpoint, options.model, options.concurrency)
    try:
        judged, wall_s = await evaluate.judge_all(writer, client, chosen, options.concurrency)
    finally:
        await client.aclose()
    return sum(j.latency_s is not None for j in judged) / wall_s


async def direct_side(settings: Settings, options: Any, chosen: list[evaluate.Case]) -> float:
    prompts = []
    for case in chosen:
        variant = case.moment.get("variant") or "a"
        pct = discount_pct(case.context.loyalty_tier)
        prompts.append(prompt_for(case.moment["type"], case.context, pct, variant))
    client = LLMClient(options.endpoint, options.model, timeout_s=settings.llm_timeout_s,
                       retries=settings.llm_retries, max_in_flight=options.concurrency)  # fmt: skip
    todo = iter(prompts)
    answered = 0

    async def work() -> None:
        nonlocal answered
        limit, temperature = settings.llm_max_tokens, settings.llm_temperature
        for prompt in todo:
            await client.chat(prompt.messages, max_tokens=limit, temperature=temperature,
                              json_schema=prompt.schema)  # fmt: skip
            answered += 1

    try:
        started = time.monotonic()
        await asyncio.gather(*(work() for _ in range(options.concurrency)))
        return answered / (time.monotonic() - started)
    finally:
        await client.aclose()


async def reset_prefix_cache(endpoint: str) -> None:
    """Only a vLLM started with VLLM_SERVER_DEV_MODE=1 has it; others keep nothing to reset."""
    url = endpoint.removesuffix("/v1") + "/reset_prefix_cache"
    async with httpx.AsyncClient(timeout=10) as http:
        with contextlib.suppress(httpx.HTTPError):
            await http.post(url)


async def compare(settings: Settings, options: Any, chosen: list[evaluate.Case]) -> None:
    sides: dict[str, Callable[..., Awaitable[float]]] = {"eval": eval_side, "direct": direct_side}
    for side in sides.values():  # code paths and connections warm, not counted
        await side(settings, options, chosen[: options.concurrency * 2])
    ratios = []
    for n in range(options.rounds):
        order = list(sides) if n % 2 == 0 else list(reversed(sides))
        rates = {}
        for side in order:
            await reset_prefix_cache(options.endpoint)
            rates[side] = await sides[side](settings, options, chosen)
        ratios.append(rates["eval"] / rates["direct"])
        print(f"round {n + 1} ({order[0]} first): eval {rates['eval']:.2f} generations/s, "
              f"direct {rates['direct']:.2f}/s, ratio {ratios[-1]:.3f}", flush=True)  # fmt: skip
    print(f"median ratio eval/direct over {options.rounds} rounds of {len(chosen)} moments at "
          f"concurrency {options.concurrency}: {statistics.median(ratios):.3f}")  # fmt: skip


# In a process of its own, as a model server is: in this one it would take
# the interpreter lock from the side being measured.
STAND_IN = """
import sys, time
from tests.support.fake_llm import Answer, FakeLLM
with FakeLLM(lambda _request: Answer(delay_s=0.05), port=int(sys.argv[1])):
    print("ready", flush=True)
    time.sleep(86400)
"""


@contextlib.contextmanager
def stand_in() -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", STAND_IN, str(port)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("moments", type=Path)
    parser.add_argument("--endpoint")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--stand-in", action="store_true", help="a scripted server, 50 ms each")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--repeat", type=int, default=1, help="send each moment this many times")
    options = parser.parse_args()
    settings = Settings()
    records = evaluate.read_lines(options.moments)
    rules, reference = load_rules(settings.rules_file), ReferenceData(settings.reference_dir)
    chosen, _ = evaluate.cases(records, reference, rules, settings, limit=options.limit)
    chosen *= options.repeat
    with contextlib.ExitStack() as running:
        if options.stand_in:
            options.endpoint, options.model = running.enter_context(stand_in()), "fake-llm"
        if not options.endpoint:
            parser.error("--endpoint URL or --stand-in")
        asyncio.run(compare(settings, options, chosen))


if __name__ == "__main__":
    main()
