"""The LLM phases' shared numbers and measuring helpers: sizes, durations,
percentiles, metric samples, background traffic."""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from streams.settings import Settings
from streams.tools.producer import EventProducer

BURST = 16


# Shoppers at once for offers/s against the stand-in model server.
OFFERS_BURST = 64


ROUNDS = 3


BACKGROUND_RATE = 1000


BACKGROUND_USERS = 5000


# The background producer's linger: the Kafka clients' usual 5 ms. At 1,000
# events/s over 4 partitions that is some 800 record batches a second.
BACKGROUND_LINGER_MS = 5


PHASE_S = 60.0


STALL_S = 30.0


PING_EVERY_S = 2.0


STAND_IN_DELAY_S = 0.05


# The steps from a ping to its offer consumed (bench/report.py describes them).
HOPS = ("ping_to_ingested", "ingested_to_moment", "moment_to_generation",
        "generation_less_model", "emitted_to_consumed")  # fmt: skip


NAMES = ["Ana", "Ben", "Chloe", "Dmitri", "Esra", "Farid", "Grace", "Hugo", "Ines", "Jonas",
         "Kemal", "Lena", "Mona", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami",
         "Tara"]  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * q // 100) - 1))]


def sample(text: str, name: str, labels: str = "") -> float:
    """One sample's value in Prometheus text (``labels`` as written there, e.g.
    ``{kind="prompt"}``); 0 if absent."""
    pattern = rf"^{re.escape(name + labels)} ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def paced(
    settings: Settings,
    seconds: float,
    sent: Any,
    linger_ms: int,
    event: Callable[[int], tuple[str, dict[str, Any]]],
) -> None:
    """BACKGROUND_RATE events/s of ``event(now_ms)`` (a source and a Segment
    body with its userId) for ``seconds``, from a producer lingering
    ``linger_ms``; ``sent`` (a shared counter) counts them.

    Runs in a process of its own, as the producers of a real deployment do,
    so its work does not delay the bench's clock on pings and offers."""

    async def run() -> None:
        producer = EventProducer(settings, linger_ms=linger_ms)
        await producer.start()
        try:
            started, count = time.monotonic(), 0
            while (elapsed := time.monotonic() - started) < seconds:
                for _ in range(int(elapsed * BACKGROUND_RATE) - count):
                    source, body = event(int(time.time() * 1000))
                    await producer.send_raw(source, orjson.dumps(body), body["userId"])
                    count += 1
                    sent.value = count
                await asyncio.sleep(0.005)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def background(
    settings: Settings, products: list[str], seconds: float, sent: Any, linger_ms: int
) -> None:
    """Product views and pages from people who never walk into a store (see
    :func:`paced`)."""
    rng = random.Random(9)

    def event(ts: int) -> tuple[str, dict[str, Any]]:
        user = f"bg-{rng.randrange(BACKGROUND_USERS)}"
        if rng.random() < 0.7:
            body = {"type": "track", "event": "Product Viewed", "userId": user,
                    "properties": {"product_id": rng.choice(products)}}  # fmt: skip
        else:
            body = {"type": "page", "name": "/catalog", "userId": user}
        return "clickstream", {**body, "timestamp": ts, "messageId": uuid.uuid4().hex}

    paced(settings, seconds, sent, linger_ms, event)
