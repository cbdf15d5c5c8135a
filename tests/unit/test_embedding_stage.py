"""The product embedder's passes, on a worker's runtime without a broker:
what is embedded, re-embedded, dropped, and retried after a failure."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agents.embedding import ProductEmbedder, plan, product_text
from agents.rules import load_rules
from agents.worker import build_runtime
from streams.reference import load_reference
from streams.settings import Settings
from streams.vectors import DIM

ROW = {"id": "p-900", "name": "Trail gaiters", "category": "running", "price": 25.0}


class FakeEncoder:
    """A vector per text from its hash; fails while ``down``; records its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.down = False

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.down:
            raise ConnectionError("model down")
        return np.stack([vector_of(t) for t in texts]) if texts else np.zeros((0, DIM))


def vector_of(text: str) -> np.ndarray:
    vec = np.random.default_rng(zlib.crc32(text.encode())).normal(size=DIM).astype(np.float32)
    return vec / np.linalg.norm(vec)


@pytest.fixture
def stage() -> Iterator[tuple[ProductEmbedder, FakeEncoder]]:
    embedder, encoder = make(Settings(store="memory://"))
    yield embedder, encoder
    embedder.pool.shutdown(wait=True)


def make(settings: Settings, fingerprint: str | None = None) -> tuple[ProductEmbedder, FakeEncoder]:
    encoder = FakeEncoder()
    rt = build_runtime(settings, load_rules(None))
    return ProductEmbedder(rt, encoder, fingerprint), encoder


def counts(embedder: ProductEmbedder) -> dict[str, float]:
    registry = embedder.rt.metrics.registry
    return {o: registry.get_sample_value("kairos_product_embeddings_total", {"outcome": o}) or 0
            for o in ("embedded", "cached", "removed", "failed")}  # fmt: skip


def test_the_plan_embeds_new_and_changed_texts_and_drops_the_gone() -> None:
    products = load_reference().products
    embedded = {pid: product_text(p) for pid, p in products.items() if pid != "p-101"}
    embedded["p-102"] = "an older name (running)"
    embedded["p-gone"] = "whatever"
    work = plan(products, embedded)
    assert sorted(work.embed) == ["p-101", "p-102"] and work.drop == ["p-gone"]
    assert work.embed["p-102"] == product_text(products["p-102"])


def test_the_catalog_is_embedded_in_one_call_then_follows_changes(
    stage: tuple[ProductEmbedder, FakeEncoder],
) -> None:
    embedder, encoder = stage
    reference, vectors = embedder.rt.reference, embedder.rt.reference.vectors
    assert asyncio.run(embedder.sync())
    catalog = reference.current.products
    assert len(encoder.calls) == 1 and len(encoder.calls[0]) == len(catalog) == len(vectors)
    assert np.allclose(vectors.get("p-101"), vector_of(product_text(catalog["p-101"])))

    reference.apply("product", "p-900", ROW)  # added
    reference.apply("product", "p-101", {**catalog["p-101"].__dict__, "name": "Fell shoes"})
    reference.apply("product", "p-102", {**catalog["p-102"].__dict__, "price": 1.0})
    reference.apply("product", "p-202", None)  # deleted
    assert asyncio.run(embedder.sync())
    assert sorted(encoder.calls[1]) == ["Fell shoes (running)", "Trail gaiters (running)"]
    assert np.allclose(vectors.get("p-101"), vector_of("Fell shoes (running)"))
    assert vectors.get("p-900") is not None and vectors.get("p-202") is None
    assert counts(embedder) == {
        "embedded": len(catalog) + 2,
        "cached": 0,
        "removed": 1,
        "failed": 0,
    }
    assert embedder.rt.metrics.registry.get_sample_value("kairos_product_vectors") == len(vectors)


def test_a_failed_batch_leaves_old_vectors_and_is_retried(
    stage: tuple[ProductEmbedder, FakeEncoder],
) -> None:
    embedder, encoder = stage
    reference, vectors = embedder.rt.reference, embedder.rt.reference.vectors
    assert asyncio.run(embedder.sync())
    before = vectors.get("p-101")
    encoder.down = True
    reference.apply("product", "p-900", ROW)
    reference.apply("product", "p-101", {**reference.current.products["p-101"].__dict__,
                                         "name": "Fell shoes"})  # fmt: skip
    assert not asyncio.run(embedder.sync())
    assert vectors.get("p-900") is None and np.allclose(vectors.get("p-101"), before)
    assert counts(embedder)["failed"] == 2
    encoder.down = False
    assert asyncio.run(embedder.sync())
    assert vectors.get("p-900") is not None
    assert np.allclose(vectors.get("p-101"), vector_of("Fell shoes (running)"))


def test_reference_changes_wake_the_stage(stage: tuple[ProductEmbedder, FakeEncoder]) -> None:
    embedder, _ = stage
    embedder.wake.clear()
    embedder.rt.reference.apply("store", "s-soho", None)
    assert not embedder.wake.is_set()
    embedder.rt.reference.apply("product", "p-101", None)
    assert embedder.wake.is_set()


def test_a_restart_reads_the_vectors_back_and_embeds_only_what_changed(tmp_path: Path) -> None:
    settings = Settings(store="memory://", data_dir=tmp_path)
    first, _ = make(settings, fingerprint="model-a")
    asyncio.run(first.on_start())
    assert asyncio.run(first.sync())
    first.pool.shutdown(wait=True)

    again, encoder = make(settings, fingerprint="model-a")
    renamed = {**again.rt.reference.current.products["p-101"].__dict__, "name": "Fell shoes"}
    again.rt.reference.apply("product", "p-101", renamed)
    asyncio.run(again.on_start())
    assert asyncio.run(again.sync())
    again.pool.shutdown(wait=True)
    catalog = len(again.rt.reference.current.products)
    assert encoder.calls == [["Fell shoes (running)"]]
    assert counts(again) == {"embedded": 1, "cached": catalog - 1, "removed": 0, "failed": 0}
    text = product_text(again.rt.reference.current.products["p-202"])
    assert np.allclose(again.rt.reference.vectors.get("p-202"), vector_of(text), atol=1e-6)

    other, encoder = make(settings, fingerprint="model-b")  # another model: nothing reused
    asyncio.run(other.on_start())
    assert asyncio.run(other.sync())
    other.pool.shutdown(wait=True)
    assert len(encoder.calls[0]) == catalog and counts(other)["cached"] == 0


def test_an_unreadable_cache_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / "vectors.npz").write_bytes(b"not a numpy file")
    embedder, encoder = make(Settings(store="memory://", data_dir=tmp_path), "model-a")
    asyncio.run(embedder.on_start())
    assert asyncio.run(embedder.sync())
    embedder.pool.shutdown(wait=True)
    assert len(encoder.calls[0]) == len(embedder.rt.reference.vectors) > 0


def test_unusable_vectors_are_failures_and_the_rest_are_kept(
    stage: tuple[ProductEmbedder, FakeEncoder],
) -> None:
    embedder, encoder = stage
    good = encoder.__call__

    def one_nan(texts: list[str]) -> np.ndarray:
        out = good(texts)
        out[0] = np.nan
        return out

    embedder._encode = one_nan
    assert not asyncio.run(embedder.sync())
    catalog = len(embedder.rt.reference.current.products)
    assert counts(embedder)["failed"] == 1 and len(embedder.rt.reference.vectors) == catalog - 1
    embedder._encode = lambda texts: good(texts)[:0]  # no vectors at all
    assert not asyncio.run(embedder.sync())
    assert counts(embedder)["failed"] == 2
    embedder._encode = good
    assert asyncio.run(embedder.sync()) and len(embedder.rt.reference.vectors) == catalog


def test_a_pass_cut_short_by_the_worker_stopping_counts_no_failure(
    stage: tuple[ProductEmbedder, FakeEncoder],
) -> None:
    embedder, encoder = stage
    embedder._stopped.set()  # stopping: on_stop shuts the executor down under the pass
    embedder.pool.shutdown(wait=True)
    assert not asyncio.run(embedder.sync())
    assert counts(embedder)["failed"] == 0 and encoder.calls == []
