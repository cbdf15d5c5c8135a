"""``kairos demo``: the whole loop on one machine, every part real.

Starts what is embedded (the broker, the vLLM server with SmolLM2), creates
the topics, runs a worker, drives a synthetic population for ``--duration``
seconds, prints each offer as it lands on kairos.offers, waits for the
moments still being written, and closes with a summary. Every process it
started is stopped on the way out, Ctrl-C included.

Then it closes the loop as a notification service and the shoppers would:
feedback for each offer (delivered, some opened, some of those redeemed,
by seeded chance) and orders, from those who redeemed and from a few of the
people the holdout kept back, and prints `kairos report`'s table. The
feedback and orders are simulated; the attribution and the report are the
real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from aiokafka import AIOKafkaConsumer

from streams import clients
from streams.codecs import loads, now_ms
from streams.errors import BrokerError, CommandError, ProcessFailed
from streams.reference import load_reference
from streams.runtime.admin import create_topics
from streams.runtime.topics import internal_name
from streams.settings import Settings
from streams.tools.console import Progress, say
from streams.tools.process import ManagedProcess
from streams.tools.producer import EventProducer, replay
from streams.tools.synthetic import plan
from streams.tools.traffic import Population

WORKER_READY_TIMEOUT_S = 120.0
STAGES = ("ingest", "moment", "queue", "generation", "delivery", "end_to_end")


@dataclass(frozen=True)
class DemoOptions:
    population: Population
    offers_out: Path | None = None


@dataclass
class Tally:
    events: int = 0
    moments: int = 0
    held_back: Counter[str] = field(default_factory=Counter)  # moments without an offer, by reason
    dead_letters: int = 0
    offers: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    held_out: list[str] = field(default_factory=list)  # people the holdout kept back
    report: str = ""


def run(settings: Settings, options: DemoOptions) -> int:
    started: list[ManagedProcess] = []
    tally = Tally()
    try:
        _start_embedded(settings, started)
        created = asyncio.run(create_topics(settings))
        say(f"topics: {len(created)} created" if created else "topics: all exist")
        started.append(_start_worker(settings))
        asyncio.run(_drive(settings, options, tally))
    except ProcessFailed as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        say("\ninterrupted: stopping")
        interrupted = True
    else:
        interrupted = False
    finally:
        for process in reversed(started):
            process.stop()
    _summary(tally)
    if interrupted:
        return 130
    if not tally.offers:
        say(
            "no offers were emitted; see the logs in " + str(settings.data_dir / "logs"), sys.stderr
        )
        return 1
    return 0


def _start_embedded(settings: Settings, started: list[ManagedProcess]) -> None:
    from models.server import LLMServerError, ensure_model, start_llm_server
    from streams.tools.broker import start_embedded

    logs = settings.data_dir / "logs"
    try:
        if settings.embedded_broker:
            # Each demo starts from an empty broker and no worker state, so
            # its summary counts this run's traffic alone.
            for state in ("kafka", "worker"):
                shutil.rmtree(settings.data_dir / state, ignore_errors=True)
            t0 = time.monotonic()
            started.append(start_embedded(settings))
            say(f"broker: embedded Apache Kafka on 127.0.0.1:{settings.broker_port}, "
                f"ready in {time.monotonic() - t0:.2f} s")  # fmt: skip
        else:
            say(f"broker: {settings.bootstrap_servers}")
        if settings.embedded_llm:
            t0 = time.monotonic()
            say("llm: preparing SmolLM2-135M-Instruct (converted from GGUF once, then cached)")
            converting = Progress("converting")
            folder = ensure_model(settings, logs / "convert.log", converting)
            converting.done()
            say(f"llm: model ready in {time.monotonic() - t0:.0f} s; starting vLLM on CPU")
            t0 = time.monotonic()
            loading = Progress("vLLM")
            started.append(start_llm_server(settings, folder, logs / "llm.log", loading))
            loading.done()
            say(f"llm: vLLM serving {settings.llm_model} at {settings.llm_base_url}, "
                f"ready in {time.monotonic() - t0:.0f} s")  # fmt: skip
        else:
            say(f"llm: {settings.llm_base_url}")
    except (BrokerError, LLMServerError) as exc:
        raise CommandError(str(exc)) from None


def _start_worker(settings: Settings) -> ManagedProcess:
    worker = ManagedProcess(
        "worker",
        [sys.executable, "-m", "streams.tools.cli", "worker"],
        settings.data_dir / "logs" / "worker.log",
    )
    worker.start()
    url = f"http://{settings.web_host}:{settings.web_port}/ready"
    joining = Progress("worker")
    elapsed = worker.wait_ready(lambda: _ready(url), WORKER_READY_TIMEOUT_S, joining)
    joining.done()
    say(f"worker: ready in {elapsed:.1f} s (metrics at http://{settings.web_host}:"
        f"{settings.web_port}/metrics)")  # fmt: skip
    return worker


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


async def _drive(settings: Settings, options: DemoOptions, tally: Tally) -> None:
    out = options.offers_out.open("w") if options.offers_out else None
    consumer = clients.consumer(
        settings,
        settings.topics.offers,
        internal_name(settings, "moments"),
        settings.topics.dlq,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_wait_ms=settings.consumer_fetch_wait_ms,
        isolation_level="read_committed",  # offers land in transactions
    )
    await consumer.start()
    watcher = asyncio.create_task(_watch(consumer, settings, tally, out))
    try:
        crowd = options.population
        say(f"traffic: {crowd.users} shoppers and {crowd.rate:g} background events/s "
            f"for {crowd.duration:g} s")  # fmt: skip
        await _produce(settings, options, tally)
        await _wait_for_offers(tally, settings)
        await _close_the_loop(settings, options, tally)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await consumer.stop()
        if out:
            out.close()


async def _produce(settings: Settings, options: DemoOptions, tally: Tally) -> None:
    planned = plan(load_reference(settings.reference_dir), options.population)

    def sent(count: int) -> None:
        tally.events = count

    await replay(settings, planned, on_sent=sent)


async def _wait_for_offers(tally: Tally, settings: Settings) -> None:
    """After the traffic, give the moments in flight time to become offers."""
    deadline = time.monotonic() + max(60.0, 3 * settings.llm_timeout_s)
    await asyncio.sleep(2.0)  # the last events' moments are still on their way
    while (
        len(tally.seen) < tally.moments - sum(tally.held_back.values())
        and (left := deadline - time.monotonic()) > 0
    ):
        tally.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.changed.wait(), left)


async def _watch(
    consumer: AIOKafkaConsumer, settings: Settings, tally: Tally, out: TextIO | None
) -> None:
    moments_topic = internal_name(settings, "moments")
    async for record in consumer:
        if record.topic == moments_topic:
            tally.moments += 1
            moment = loads(record.value)
            reason = moment.get("suppressed")
            if reason:
                tally.held_back[reason] += 1
            if reason == "holdout":
                tally.held_out.append(moment["user"])
        elif record.topic == settings.topics.dlq:
            tally.dead_letters += 1
        else:
            offer = loads(record.value)
            if offer["offer_id"] in tally.seen:
                continue  # with KAIROS_OFFERS_EXACTLY_ONCE off, a replay carries the same id
            tally.seen.add(offer["offer_id"])
            offer["timings"]["received_at"] = now_ms()
            tally.offers.append(offer)
            _print_offer(offer)
            if out:
                out.write(record.value.decode() + "\n")
                out.flush()
        tally.changed.set()


# The simulated notification service and shoppers.
DELIVERED, OPENED, REDEEMED, HOLDOUT_ORDERS = 0.97, 0.5, 0.35, 0.08


async def _close_the_loop(settings: Settings, options: DemoOptions, tally: Tally) -> None:
    """Feedback and orders for what was offered and held out; then the report."""
    from streams.tools.report import report, table

    rng = random.Random(options.population.seed)
    events: list[tuple[str, dict[str, Any]]] = []
    for offer in tally.offers:
        user, oid = offer["user"], offer["offer_id"]
        if rng.random() > DELIVERED:
            continue
        actions = ["delivered"]
        if rng.random() < OPENED:
            actions.append("opened")
            if rng.random() < REDEEMED:
                actions.append("redeemed")
        for action in actions:
            feedback = {"type": "feedback", "userId": user, "offer_id": oid, "action": action}
            events.append(("feedback", {**feedback, "messageId": f"{oid}-{action}"}))
        if "redeemed" in actions:
            events.append(("crm", _order(user, oid)))
    for user in tally.held_out:
        if rng.random() < HOLDOUT_ORDERS:
            events.append(("crm", _order(user, f"holdout-{user}")))
    say(f"\nclosing the loop (simulated): {len(events)} feedback events and orders")
    producer = EventProducer(settings)
    await producer.start()
    try:
        for source, event in events:
            await producer.send(source, event)
        await producer.flush()
    finally:
        await producer.stop()
    await asyncio.sleep(3.0)  # for the worker to join them
    tally.report = table(await report(settings))


def _order(user: str, ref: str) -> dict[str, Any]:
    return {"type": "order", "userId": user, "order_id": f"order-{ref}", "total": 60.0,
            "messageId": f"order-{ref}"}  # fmt: skip


def _occasion(offer: dict[str, Any]) -> str:
    if offer["moment"]["type"] == "win_back" and offer.get("store"):
        return f"has not been back to {offer['store']['name']}"
    if offer.get("store"):
        return f"walked into {offer['store']['name']}"
    return "left a cart" if offer["moment"]["type"] == "cart_abandoned" else offer["moment"]["type"]


def _print_offer(offer: dict[str, Any]) -> None:
    t = offer["timings"]
    who = offer["user"]
    source = (
        offer["model"] if offer["source"] == "model" else f"fallback: {offer['fallback_reason']}"
    )
    say(
        f"\n[offer {offer['offer_id'][:14]}] {who} {_occasion(offer)}\n"
        f"  {offer['headline']}\n"
        f"  {offer['message']}\n"
        f"  coupon {offer['coupon']['code']} ({offer['coupon']['discount_pct']}% off)"
        f"  | {source} | generation {t['generation_ms']} ms"
        f" | event to offer {t['received_at'] - t['event_ts']} ms"
    )


def stage_latencies(offer: dict[str, Any]) -> dict[str, int]:
    t = offer["timings"]
    return {
        "ingest": t["ingested_at"] - t["event_ts"],
        "moment": t["moment_at"] - t["ingested_at"],
        "queue": t["generation_started_at"] - t["moment_at"],
        "generation": t["generation_ms"],
        "delivery": t["received_at"] - t["emitted_at"],
        "end_to_end": t["received_at"] - t["event_ts"],
    }


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(tally: Tally) -> None:
    by_model = sum(1 for o in tally.offers if o["source"] == "model")
    say("\nsummary")
    say(f"  events produced   {tally.events}")
    say(f"  dead letters      {tally.dead_letters}")
    held = ", ".join(f"{n} {reason}" for reason, n in sorted(tally.held_back.items()))
    say(f"  moments           {tally.moments}" + (f" ({held}: no offer)" if held else ""))
    say(f"  offers            {len(tally.offers)} ({by_model} written by the model, "
        f"{len(tally.offers) - by_model} fallback)")  # fmt: skip
    if not tally.offers:
        return
    say(f"  {'latency (ms)':18}{'p50':>8}{'p99':>8}")
    rows = [stage_latencies(o) for o in tally.offers]
    for stage in STAGES:
        values = [row[stage] for row in rows]
        say(f"  {stage:18}{percentile(values, 0.5):>8}{percentile(values, 0.99):>8}")
    if tally.report:
        say("\noffers that work? (kairos report)")
        say(tally.report)
