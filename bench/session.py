"""One measuring session against a running stack: the LLM phases' traffic,
timings and checks."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import random
import statistics
import time
from typing import Any

import httpx
import orjson

from agents.embedding import product_text
from agents.moment_types import STORE_ENTRY, prompt_for, select_context
from agents.moments import moment_id, offer_id
from agents.rules import in_holdout, load_rules
from bench.measure import (
    BACKGROUND_LINGER_MS,
    BURST,
    HOPS,
    NAMES,
    OFFERS_BURST,
    PHASE_S,
    PING_EVERY_S,
    ROUNDS,
    STALL_S,
    background,
    percentile,
    sample,
)
from models.client import chat_body
from models.embeddings import Encoder
from models.prompts import STOP
from streams import clients
from streams.reference import Reference, load_reference
from streams.runtime.topics import internal_name
from streams.settings import Settings
from streams.tools.process import ManagedProcess
from streams.tools.producer import EventProducer
from streams.vectors import ProductVectors


class Session:
    """The bench's side of one stack: producer, consumers, metrics, shoppers."""

    def __init__(
        self,
        settings: Settings,
        web: int,
        server: ManagedProcess | None,
        background_linger_ms: int = BACKGROUND_LINGER_MS,
    ) -> None:
        self.settings = settings
        self.background_linger_ms = background_linger_ms
        self.server = server
        self.metrics_url = f"http://127.0.0.1:{web}/metrics"
        self.http = httpx.AsyncClient(timeout=10)
        # The shoppers' phones: each ping is sent as it happens (no linger).
        self.producer = EventProducer(settings, linger_ms=0)
        self.reference = load_reference(settings.reference_dir)
        self.rules = load_rules(settings.rules_file)
        self.stores = sorted(self.reference.stores.values(), key=lambda s: s.id)
        self.rng = random.Random(5)
        self.own_sent = 0  # valid, distinct events produced here
        self.background_sent = 0  # and by finished background processes
        self._background: Any = None  # the running one's shared counter
        self.offers: dict[str, tuple[float, dict[str, Any]]] = {}  # id: (consumed at ms, offer)
        self.moments: dict[str, dict[str, Any]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        """The producer and the consumers of offers and moments, while the block runs."""
        await self.producer.start()
        self._tasks = [
            asyncio.create_task(self._consume(self.settings.topics.offers, self._offer)),
            asyncio.create_task(
                self._consume(internal_name(self.settings, "moments"), self._moment)
            ),
        ]
        try:
            yield
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.producer.stop()
            await self.http.aclose()

    async def stand_in(self, tag: str) -> dict[str, float]:
        """Live traffic and store entries against the stand-in model server."""
        async with self.running():
            await self.burst("warm", 2)  # code paths warm
            lags, pinged = await self.traffic(tag, PHASE_S, pings=True)
            latencies = await self.latencies(pinged)
            # Throughput: OFFERS_BURST shoppers at once, the first ping to the last offer.
            moments, started = await self.burst(f"{tag}-burst", OFFERS_BURST)
            latencies["offers_per_s"] = round(
                len(moments) / (self._last_offer(moments) - started), 2
            )
        return {**lags, **{f"{key}_{tag}": value for key, value in latencies.items()}}

    async def run(self) -> dict[str, float]:
        async with self.running():
            figures: dict[str, float] = {}
            await self.direct((await self.burst("warm", 2))[0])  # code paths warm
            rounds = []
            for n in range(ROUNDS):
                await self.reset_prefix_cache()
                moments, started = await self.burst(f"burst{n}", BURST)
                kairos_s = self._last_offer(moments) - started
                await self.reset_prefix_cache()
                direct_s = await self.direct(moments)
                rounds.append((len(moments) / kairos_s, len(moments) / direct_s))
                print(f"  burst {n + 1}: {rounds[-1][0]:.2f} generations/s through kairos, "
                      f"{rounds[-1][1]:.2f}/s direct")  # fmt: skip
            figures["llm_batching_ratio"] = round(statistics.median(k / d for k, d in rounds), 3)
            kairos = statistics.median(k for k, _ in rounds)
            figures["llm_generations_per_s_kairos"] = round(kairos, 3)
            figures["llm_generations_per_s_direct"] = round(
                statistics.median(d for _, d in rounds), 3
            )
            lags, pinged = await self.traffic("llm_busy", PHASE_S, pings=True)
            figures.update(lags)
            figures.update(await self.latencies(pinged))
            # The stall between two baselines without store entries, so that
            # a drift over the minutes of the run shows as a difference
            # between the two baselines, not as the stall's effect.
            figures.update((await self.traffic("baseline", STALL_S, pings=False))[0])
            figures.update((await self.traffic("llm_stalled", STALL_S, pings=True,
                                               stalled=True))[0])  # fmt: skip
            figures.update((await self.traffic("baseline_after", STALL_S, pings=False))[0])
            around = (figures["feature_lag_p99_events_baseline"]
                      + figures["feature_lag_p99_events_baseline_after"]) / 2  # fmt: skip
            figures["feature_lag_stalled_vs_baseline"] = round(
                figures["feature_lag_p99_events_llm_stalled"] / around, 2
            )
            return figures

    # -- traffic -----------------------------------------------------------

    def shoppers(self, tag: str, count: int) -> list[tuple[str, Any]]:
        """``count`` people outside the store-entry holdout, each with a store."""
        pct = self.rules.holdout_pct(STORE_ENTRY)
        out: list[tuple[str, Any]] = []
        n = 0
        while len(out) < count:
            user = f"{tag}-{n}"
            n += 1
            if not in_holdout(user, STORE_ENTRY, pct):
                out.append((user, self.stores[len(out) % len(self.stores)]))
        return out

    @property
    def sent(self) -> int:
        running = self._background.value if self._background is not None else 0
        return self.own_sent + self.background_sent + running

    async def send(self, source: str, event: dict[str, Any]) -> None:
        await self.producer.send_raw(source, orjson.dumps(event), event["userId"])
        self.own_sent += 1

    async def preload(self, shoppers: list[tuple[str, Any]]) -> None:
        """A name, a tier and a recent view of a product the store sells."""
        now = int(time.time() * 1000)
        products = sorted(self.reference.products.values(), key=lambda p: p.id)
        for n, (user, store) in enumerate(shoppers):
            sold = [p for p in products if p.category in store.categories] or products
            traits = {"name": NAMES[n % len(NAMES)],
                      "loyalty_tier": self.rng.choice(["gold", "silver"])}  # fmt: skip
            await self.send("clickstream", {
                "type": "identify", "userId": user, "messageId": f"id-{user}",
                "timestamp": now - 600_000, "traits": traits,
            })  # fmt: skip
            await self.send("clickstream", {
                "type": "track", "event": "Product Viewed", "userId": user,
                "messageId": f"view-{user}", "timestamp": now - 300_000,
                "properties": {"product_id": self.rng.choice(sold).id},
            })  # fmt: skip
        await self.producer.flush()
        await self.settled()

    async def ping(self, user: str, store: Any) -> str:
        """The shopper walks in; the id of the moment that follows."""
        await self.send("location", {
            "type": "location", "userId": user, "lat": store.lat + 0.0001, "lon": store.lon,
            "accuracy_m": 8, "messageId": f"ping-{user}", "timestamp": int(time.time() * 1000),
        })  # fmt: skip
        return moment_id(STORE_ENTRY, user, store.id, f"ping-{user}")

    async def background(self, seconds: float) -> asyncio.Task[None]:
        """BACKGROUND_RATE events/s for ``seconds``, from a process of their own;
        returns once the first is sent, with a task that ends when the last is."""
        context = multiprocessing.get_context("spawn")
        self._background = counter = context.Value("q", 0)
        products = sorted(self.reference.products)
        process = context.Process(
            target=background,
            args=(self.settings, products, seconds, counter, self.background_linger_ms),
            daemon=True,
        )
        process.start()

        async def finished() -> None:
            try:
                while process.is_alive():  # noqa: ASYNC110 (a process, not a task)
                    await asyncio.sleep(0.05)
                if process.exitcode != 0:
                    raise SystemExit(f"the background producer exited with {process.exitcode}")
            finally:
                process.join(5)
                self.background_sent += counter.value
                self._background = None

        task = asyncio.create_task(finished())
        while counter.value == 0 and not task.done():  # noqa: ASYNC110 (another process)
            await asyncio.sleep(0.01)
        return task

    # -- measurements ------------------------------------------------------

    async def burst(self, tag: str, count: int) -> tuple[list[dict[str, Any]], float]:
        """``count`` store entries at once, once every offer is out: the moments,
        and when the first ping was sent (wall clock, seconds)."""
        shoppers = self.shoppers(tag, count)
        await self.preload(shoppers)
        started = time.time()
        ids = [await self.ping(user, store) for user, store in shoppers]
        await self.producer.flush()
        await self.until(lambda: all(offer_id(m) in self.offers for m in ids), 900, "offers")
        await self.until(lambda: all(m in self.moments for m in ids), 30, "moments")
        return [self.moments[m] for m in ids], started

    def _last_offer(self, moments: list[dict[str, Any]]) -> float:
        return max(self.offers[offer_id(m["id"])][0] for m in moments) / 1000

    @functools.cached_property
    def vectors(self) -> ProductVectors:
        """The catalog's product vectors as a worker holds them, made once."""
        return catalog_vectors(self.reference, self.settings)

    async def direct(self, moments: list[dict[str, Any]]) -> float:
        """Seconds for a plain client to get the same completions at the same concurrency."""
        s = self.settings
        slots = asyncio.Semaphore(s.llm_max_in_flight)
        limits = httpx.Limits(max_connections=s.llm_max_in_flight)
        bodies = []
        vectors = self.vectors
        for moment in moments:
            context = select_context(
                moment["profile"], moment, self.reference, self.rules.rule(moment["type"]),
                budget_tokens=s.llm_context_tokens, vectors=vectors,
            )  # fmt: skip
            if list(context.used) != self.offers[offer_id(moment["id"])][1]["context_used"]:
                raise SystemExit("the direct client's context differs from the offer's")
            prompt = prompt_for(moment["type"], context, moment["variant"])
            bodies.append(chat_body(s.llm_model, prompt.messages, s.llm_max_tokens,
                                    s.llm_temperature, prompt.schema, STOP))  # fmt: skip

        async with httpx.AsyncClient(base_url=s.llm_base_url, timeout=600, limits=limits) as client:

            async def one(body: dict[str, Any]) -> None:
                async with slots:
                    response = await client.post("/chat/completions", json=body)
                    response.raise_for_status()

            started = time.monotonic()
            await asyncio.gather(*(one(body) for body in bodies))
            return time.monotonic() - started

    async def traffic(
        self, tag: str, seconds: float, *, pings: bool, stalled: bool = False
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Background traffic for ``seconds``, with a store entry every PING_EVERY_S
        if ``pings``; vLLM stopped throughout if ``stalled``. Feature-lag figures,
        and when each moment's ping was sent."""
        shoppers = self.shoppers(tag, int(seconds / PING_EVERY_S)) if pings else []
        await self.preload(shoppers)
        sent_before, applied_before = self.sent, await self.applied()
        pinged: dict[str, float] = {}
        lags: list[float] = []
        in_flight: list[float] = []
        if stalled:
            assert self.server is not None
            self.server.pause()

        async def enter() -> None:
            for user, store in shoppers:
                pinged[await self.ping(user, store)] = time.time() * 1000
                await asyncio.sleep(PING_EVERY_S)

        async def watch() -> None:
            while True:
                text = (await self.http.get(self.metrics_url)).text
                applied = sample(text, "kairos_state_updates_total") - applied_before
                lags.append((self.sent - sent_before) - applied)
                in_flight.append(sample(text, "kairos_llm_in_flight"))
                await asyncio.sleep(0.1)

        background = await self.background(seconds)
        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        try:
            await asyncio.gather(background, enter())
            rate = (self.sent - sent_before) / (time.monotonic() - started)
            await self.settled()
        finally:
            watcher.cancel()
            if stalled:
                assert self.server is not None
                self.server.resume()
        figures = {
            f"feature_lag_p99_events_{tag}": percentile(lags, 99),
            f"feature_lag_max_events_{tag}": max(lags),
            f"llm_in_flight_max_{tag}": max(in_flight),
            f"background_events_per_s_{tag}": round(rate),
        }
        print(f"  {tag}: {rate:.0f} events/s, feature lag p99 {percentile(lags, 99):g} "
              f"events (max {max(lags):g}), LLM requests in flight at most "
              f"{max(in_flight):g}")  # fmt: skip
        return figures, pinged

    async def latencies(self, pinged: dict[str, float]) -> dict[str, float]:
        """End-to-end and added latency of the offers for ``pinged`` moments,
        and the p50 of each step on the way (``hop_*``), from the offers' timings."""
        await self.until(lambda: all(offer_id(m) in self.offers for m in pinged), 300, "offers")
        series: dict[str, list[float]] = {key: [] for key in (
            "e2e_{}_ms_llm", "e2e_{}_ms_no_llm", "added_latency_{}_ms",
            *(f"hop_{name}_{{}}_ms" for name in HOPS),
        )}  # fmt: skip
        for m, sent in pinged.items():
            consumed, offer = self.offers[offer_id(m)]
            t = offer["timings"]
            if t["llm_ms"] is None:
                raise SystemExit(f"offer {offer['offer_id']} fell back: {offer['fallback_reason']}")
            llm = t["llm_ms"] + t["llm_wait_ms"]  # the request, and the wait for a slot
            series["e2e_{}_ms_llm"].append(consumed - sent)
            series["e2e_{}_ms_no_llm"].append(consumed - sent - llm)
            series["added_latency_{}_ms"].append(consumed - t["moment_at"] - llm)
            steps = (t["ingested_at"] - sent, t["moment_at"] - t["ingested_at"],
                     t["generation_started_at"] - t["moment_at"], t["generation_ms"] - llm,
                     consumed - t["emitted_at"])  # fmt: skip
            for name, step in zip(HOPS, steps, strict=True):
                series[f"hop_{name}_{{}}_ms"].append(step)
        figures = {"e2e_offers_measured": len(pinged)}
        for key, values in series.items():
            figures[key.format("p50")] = round(percentile(values, 50), 1)
            if not key.startswith("hop_"):
                figures[key.format("p99")] = round(percentile(values, 99), 1)
        return figures

    # -- plumbing ----------------------------------------------------------

    async def reset_prefix_cache(self) -> None:
        """Neither side of a comparison may reuse the other's prompts from vLLM's cache."""
        url = self.settings.llm_base_url.removesuffix("/v1") + "/reset_prefix_cache"
        (await self.http.post(url)).raise_for_status()

    async def applied(self) -> float:
        text = (await self.http.get(self.metrics_url)).text
        return sample(text, "kairos_state_updates_total")

    async def settled(self, seconds: float = 120) -> None:
        """Until every event produced so far is in state."""
        deadline = time.monotonic() + seconds
        while await self.applied() < self.sent:
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the worker applied {await self.applied():.0f} of {self.sent} events"
                )
            await asyncio.sleep(0.05)

    async def until(self, done: Any, seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                raise SystemExit(f"the bench's {what} did not arrive within {seconds:g} s")
            await asyncio.sleep(0.01)

    async def _consume(self, topic: str, handle: Any) -> None:
        consumer = clients.consumer(
            self.settings,
            topic,
            auto_offset_reset="earliest",
            group_id=None,
            fetch_max_wait_ms=self.settings.consumer_fetch_wait_ms,
            isolation_level="read_committed",  # offers land in transactions
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time() * 1000
                for records in batch.values():
                    for record in records:
                        handle(now, orjson.loads(record.value))
        finally:
            await consumer.stop()

    def _offer(self, consumed: float, offer: dict[str, Any]) -> None:
        self.offers.setdefault(offer["offer_id"], (consumed, offer))

    def _moment(self, _consumed: float, moment: dict[str, Any]) -> None:
        self.moments.setdefault(moment["id"], moment)


def catalog_vectors(reference: Reference, settings: Settings) -> ProductVectors:
    """The product vectors a worker holds for ``reference``'s catalog (the
    worker's model, its texts), so that a context built here ranks the
    person's taste as the offer's did."""
    encoder = Encoder.load(settings.embed_model_dir, settings.embed_threads)
    ids = sorted(reference.products)
    vectors = ProductVectors()
    vectors.update(zip(ids, encoder.encode([product_text(reference.products[p]) for p in ids]),
                       strict=True))  # fmt: skip
    return vectors
