"""Product vectors: every product's text embedded once, and again when it changes.

At start the encoder is loaded (models/embeddings, in-process; a missing
model stops the worker with its name), and once the reference follower has
caught up with its topic the whole catalog is embedded in one pass,
batched, off the event loop (one executor thread). Vectors the last run
left in the cache (agents/vector_cache.py) for the same model and text are
read back instead of embedded. Then the stage follows the reference data in
force: ReferenceData tells it of each product the reference topic changes,
and a pass embeds the products whose text (name, category, description:
:func:`product_text`) has no vector yet, and drops the vectors of products
that are gone. A price change alone re-embeds nothing.

A failed batch (the encoder raised) never stops the worker: its products
keep the vector they had (a new product has none), the failure is counted,
and the pass is tried again ``KAIROS_EMBED_RETRY_S`` later, or at the next
product change, whichever comes first. The worker is ready once the first
pass has been tried, so /ready does not wait on a model that keeps failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import mode
import numpy as np

from agents import vector_cache
from agents.runtime import Runtime
from models.embeddings import EmbeddingError, Encoder, model_folder
from models.embeddings.encoder import read_json
from models.embeddings.weights import load_tensors
from streams.env import env_name
from streams.errors import CommandError
from streams.reference import Product
from streams.settings import Settings

log = logging.getLogger(__name__)
# Texts per encoder call: a call holds the executor thread, so a long catalog
# is cut into calls a stop can wait for (1.7 CPU seconds each for texts of
# about 27 tokens).
CHUNK = 128
Encode = Callable[[list[str]], np.ndarray]


def product_text(product: Product) -> str:
    """What a product's vector is made of."""
    text = f"{product.name} ({product.category})"
    return f"{text}. {product.description}" if product.description else text


@dataclass(frozen=True)
class Plan:
    """One pass's work: texts to embed by product id, and ids to drop."""

    embed: dict[str, str]
    drop: list[str]


def plan(products: Mapping[str, Product], embedded: Mapping[str, str]) -> Plan:
    """What to do to make ``embedded`` (id -> the text its vector was made
    from) match ``products``."""
    texts = {pid: product_text(p) for pid, p in products.items()}
    embed = {pid: text for pid, text in texts.items() if embedded.get(pid) != text}
    return Plan(embed, [pid for pid in embedded if pid not in texts])


class ProductEmbedder(mode.Service):
    """Keeps ``rt.reference.vectors`` in step with the products in force."""

    def __init__(
        self,
        rt: Runtime,
        encode: Encode | None = None,
        fingerprint: str | None = None,
        settled: asyncio.Event | None = None,
    ) -> None:
        self.rt = rt
        self._encode = encode  # None: load the configured model at start
        self.fingerprint = fingerprint  # the model's; None: no vector cache
        self.settled = settled  # set once the reference data has caught up with its topic
        super().__init__()

    def __post_init__(self) -> None:
        self.embedded: dict[str, str] = {}
        self.cache_path = self.rt.settings.data_dir / vector_cache.FILE
        self.cached: dict[str, np.ndarray] = {}  # read at start, used by the first pass
        self.tried = False
        self.wake = asyncio.Event()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kairos-embed")
        self.rt.reference.product_listeners.append(self.changed)
        self.rt.ready_checks.append(lambda: self.tried)

    def changed(self, pid: str) -> None:
        """A product was added, changed or removed: run a pass soon."""
        self.wake.set()

    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._encode is None:
            folder, threads = self.rt.settings.embed_model_dir, self.rt.settings.embed_threads
            encoder = await loop.run_in_executor(self.pool, Encoder.load, folder, threads)
            log.info("embedding model loaded from %s", encoder.folder)
            self._encode, self.fingerprint = encoder.encode, encoder.fingerprint
        if self.fingerprint is not None:
            self.cached = await loop.run_in_executor(self.pool, vector_cache.read, self.cache_path)

    async def on_stop(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    @mode.Service.task
    async def _keep_up(self) -> None:
        # The first pass embeds the catalog as the topic left it, not the files'
        # products that the topic is about to change or delete.
        if self.settled is not None:
            await self.settled.wait()
        while not self.should_stop:
            self.wake.clear()
            try:
                done = await self.sync()
            except Exception:  # a bug here must not end the task: log it, retry later
                if self.should_stop:  # the executor shut down under the pass
                    return
                log.exception("product embedding pass failed")
                done = False
            self.tried = True
            retry = None if done else self.rt.settings.embed_retry_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=retry)

    async def sync(self) -> bool:
        """One pass; False if a batch failed (its products wait for the retry)."""
        vectors, metrics = self.rt.reference.vectors, self.rt.metrics
        work = plan(self.rt.reference.current.products, self.embedded)
        for pid in work.drop:
            vectors.remove(pid)
            del self.embedded[pid]
        metrics.product_embeddings.labels("removed").inc(len(work.drop))
        items = self._from_cache(list(work.embed.items()))
        ok = True
        for start in range(0, len(items), CHUNK):
            if not await self._embed(items[start : start + CHUNK]):
                ok = False
                break
        metrics.product_vectors.set(len(vectors))
        if self.fingerprint is not None and (work.drop or work.embed):
            await asyncio.get_running_loop().run_in_executor(
                self.pool, vector_cache.write, self.cache_path, self._stored()
            )
        return ok

    def _from_cache(self, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Apply the cached vectors among ``items``; the rest, to embed."""
        if not self.cached or self.fingerprint is None:
            return items
        keys = [vector_cache.cache_key(self.fingerprint, text) for _, text in items]
        found = [(item, self.cached.get(k)) for item, k in zip(items, keys, strict=True)]
        hits = [(item, vec) for item, vec in found if vec is not None]
        if hits:
            self._apply([i for i, _ in hits], np.stack([v for _, v in hits]), "cached")
        for key in keys:  # each is used once: later passes have the vector in memory
            self.cached.pop(key, None)
        return [(pid, text) for pid, text in items if self.embedded.get(pid) != text]

    def _stored(self) -> dict[str, np.ndarray]:
        """The vectors in force by cache key, as the cache file holds them."""
        assert self.fingerprint is not None
        vectors = self.rt.reference.vectors
        stored = {}
        for pid, text in self.embedded.items():
            vec = vectors.get(pid)
            if vec is not None:
                stored[vector_cache.cache_key(self.fingerprint, text)] = vec
        return stored

    async def _embed(self, items: list[tuple[str, str]]) -> bool:
        assert self._encode is not None
        metrics = self.rt.metrics
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            matrix = await loop.run_in_executor(self.pool, self._encode, [t for _, t in items])
        except Exception as exc:  # any failure of the model: retried, never fatal
            if self.should_stop:  # stopped mid-pass: the executor refused the batch
                return False
            metrics.product_embeddings.labels("failed").inc(len(items))
            log.warning("embedding %d products failed, retrying later: %r", len(items), exc)
            return False
        metrics.embedding_latency.observe(time.perf_counter() - started)
        if len(matrix) != len(items):
            metrics.product_embeddings.labels("failed").inc(len(items))
            log.warning("the encoder gave %d vectors for %d texts", len(matrix), len(items))
            return False
        return self._apply(items, matrix, "embedded")

    def _apply(self, items: list[tuple[str, str]], matrix: np.ndarray, outcome: str) -> bool:
        """Set the vectors; False if one was unusable (its product is retried)."""
        products = self.rt.reference.current.products
        done = failed = 0
        for (pid, text), vector in zip(items, matrix, strict=True):
            product = products.get(pid)
            # Changed or removed while its batch ran: the next pass has it.
            if product is None or product_text(product) != text:
                continue
            try:
                self.rt.reference.vectors.set(pid, vector)
            except ValueError as exc:  # the wrong size, zero or not finite
                log.warning("no vector for product %r: %s", pid, exc)
                failed += 1
                continue
            self.embedded[pid] = text
            done += 1
        self.rt.metrics.product_embeddings.labels(outcome).inc(done)
        self.rt.metrics.product_embeddings.labels("failed").inc(failed)
        return failed == 0


def check_model(settings: Settings) -> None:
    """A CommandError naming what is missing or unreadable if the configured
    model is not there, and the setting if one chose the folder; maps the
    weights but reads only their header (the worker's command calls it first,
    so a bad model is a message, not a traceback from a started worker)."""
    try:
        folder = model_folder(settings.embed_model_dir)
        read_json(folder / "config.json")
        load_tensors(folder / "model.safetensors")
    except EmbeddingError as exc:
        if settings.embed_model_dir is None:  # the packaged model: no setting to name
            raise CommandError(str(exc)) from None
        raise CommandError(f"{env_name(('embed_model_dir',))}: {exc}") from None


def install(
    rt: Runtime,
    settled: asyncio.Event,
    encode: Encode | None = None,
    fingerprint: str | None = None,
) -> ProductEmbedder:
    """Register the product embedder with ``rt.app``; its first pass waits
    for ``settled``. ``encode`` replaces the configured model (tests), and
    ``fingerprint`` names it for the cache."""
    embedder = ProductEmbedder(rt, encode, fingerprint, settled)
    rt.app.service(embedder)
    return embedder
