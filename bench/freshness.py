"""Freshness per feature family at 1,000 events/s: ``freshness_p99_ms_<family>``.

One worker with the demo's settings; a producer process of its own sends
BACKGROUND_RATE events a second for PHASE_S, stamped with the time they are
sent, feeding every family (agents/freshness.py): product views and pages
(session, windows), location pings (location too) and CRM trait updates
(traits). Once every event is applied, each family's p99 comes from the
worker's ``kairos_feature_freshness_seconds`` histogram, interpolated within
its buckets as Prometheus's ``histogram_quantile`` does (the alert's view).

Alone: ``python -m bench.freshness`` prints the figures; ``make bench``
writes them with the rest.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import re
import time
import uuid
from typing import Any

import httpx

from agents.freshness import FAMILIES
from bench.llm import start_stack
from bench.measure import (
    BACKGROUND_LINGER_MS,
    BACKGROUND_USERS,
    PHASE_S,
    paced,
    sample,
)
from streams.settings import Settings

METRIC = "kairos_feature_freshness_seconds"


def event(rng: random.Random, ts: int) -> tuple[str, dict[str, Any]]:
    """One event of the mix: 55% views, 15% pages, 15% pings, 15% CRM traits."""
    user, roll = f"f-{rng.randrange(BACKGROUND_USERS)}", rng.random()
    body: dict[str, Any] = {"userId": user, "timestamp": ts, "messageId": uuid.uuid4().hex}
    if roll < 0.55:
        return "clickstream", {**body, "type": "track", "event": "Product Viewed",
                               "properties": {"product_id": f"p-{rng.randrange(100)}"}}  # fmt: skip
    if roll < 0.70:
        return "clickstream", {**body, "type": "page", "name": "/catalog"}
    if roll < 0.85:  # somewhere no store is
        return "location", {**body, "lat": rng.uniform(-60, -50), "lon": rng.uniform(0, 10)}
    return "crm", {**body, "type": "traits", "traits": {"tier": rng.choice("abc")}}


def traffic(settings: Settings, seconds: float, sent: Any) -> None:
    """BACKGROUND_RATE events/s of the mix for ``seconds``; ``sent`` counts them.
    In a process of its own, so its work does not delay the worker's."""
    rng = random.Random(13)
    paced(settings, seconds, sent, BACKGROUND_LINGER_MS, lambda ts: event(rng, ts))


def quantile(text: str, family: str, q: float) -> float:
    """``histogram_quantile(q, ...)`` of one family's buckets in /metrics ``text``, in s."""
    pattern = rf'^{METRIC}_bucket\{{family="{family}",le="([^"]+)"\}} (\S+)$'
    buckets = sorted((float(le), float(n)) for le, n in re.findall(pattern, text, re.M))
    total = buckets[-1][1] if buckets else 0.0
    if total == 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower  # as Prometheus: the highest finite bound
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def freshness(
    stack: tuple[Any, Settings, dict[str, str]], seconds: float = PHASE_S
) -> dict[str, float]:
    """The phase: ``freshness_p99_ms_<family>`` (and p50) and the events it sent."""
    workdir, settings, env = stack
    settings = settings.model_copy(update={"llm_url": "http://127.0.0.1:9/v1"})  # no offers needed
    with contextlib.ExitStack() as running:
        start_stack(running, workdir, settings, {**env, "KAIROS_LLM_URL": settings.llm_base_url})
        context = multiprocessing.get_context("spawn")
        sent = context.Value("q", 0)
        producer = context.Process(target=traffic, args=(settings, seconds, sent), daemon=True)
        producer.start()
        producer.join(seconds + 120)
        if producer.exitcode != 0:
            raise SystemExit(f"the freshness producer exited with {producer.exitcode}")
        text = applied_all(settings, sent.value)
    figures = {
        f"freshness_p{q}_ms_{family}": round(quantile(text, family, q / 100) * 1000, 1)
        for q in (50, 99)
        for family in FAMILIES
    }
    figures["freshness_events"] = sent.value
    return figures


def applied_all(settings: Settings, sent: int, timeout_s: float = 120.0) -> str:
    """/metrics once every sent event is applied (invalid ones: none are sent)."""
    url = f"http://127.0.0.1:{settings.web_port}/metrics"
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(url, timeout=5).text
        if sample(text, "kairos_state_updates_total") >= sent:
            return text
        if time.monotonic() > deadline:
            raise SystemExit(f"the worker applied fewer than the {sent} events sent")
        time.sleep(0.2)


if __name__ == "__main__":
    from bench.stack import stack_settings

    for key, value in freshness(stack_settings()).items():
        print(f"  {key:30} {value:g}")
