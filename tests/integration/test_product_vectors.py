"""Product vectors follow the reference topic: a product added at runtime
gets a vector, a renamed one a new vector, a price change none, and a
deleted one loses its vector, without a restart; after one, the vectors are
read back from the worker's disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from streams.reference import load_reference
from tests.integration.test_reference import NO_LLM, send_raw
from tests.support.stack import Worker, labelled, settings_for_test

pytestmark = pytest.mark.broker
GAITERS = {"id": "p-900", "name": "Trail gaiters", "category": "running", "price": 25.0,
           "description": "Keep grit out of your shoes."}  # fmt: skip


def embeddings(worker: Worker) -> dict[str, float]:
    return labelled(worker.metrics(), "kairos_product_embeddings_total", "outcome")


def send_product(worker: Worker, pid: str, row: dict | None) -> None:
    value = orjson.dumps(row) if row is not None else b""
    asyncio.run(send_raw(worker.settings, f"product:{pid}".encode(), value))


def test_reference_changes_embed_add_and_drop_product_vectors(broker: str, tmp_path: Path) -> None:
    catalog = len(load_reference().products)
    worker = Worker(settings_for_test(broker, NO_LLM, "none", tmp_path))
    worker.start()  # ready: the catalog's pass has run
    try:
        assert worker.counter("kairos_product_vectors") == catalog
        assert embeddings(worker) == {"embedded": catalog, "cached": 0, "removed": 0, "failed": 0}

        send_product(worker, "p-900", GAITERS)  # added at runtime
        assert worker.wait_for("kairos_product_vectors", catalog + 1) == catalog + 1

        flats = {"id": "p-102", "name": "Road racing flats", "category": "running"}
        send_product(worker, "p-102", {**flats, "price": 99.0})  # price only: same text
        send_product(worker, "p-102", {**flats, "name": "Carbon racing flats", "price": 99.0})
        assert worker.wait_for("kairos_reference_updates_total", 3) == 3
        worker.wait_for("kairos_product_embeddings_total", catalog + 2)
        assert embeddings(worker)["embedded"] == catalog + 2  # the new one and the renamed one

        send_product(worker, "p-202", None)  # deleted
        assert worker.wait_for("kairos_product_embeddings_total", catalog + 3) == catalog + 3
        assert embeddings(worker) == {"embedded": catalog + 2, "cached": 0, "removed": 1,
                                      "failed": 0}  # fmt: skip
        assert worker.counter("kairos_product_vectors") == catalog
        assert worker.counter("kairos_embedding_seconds_count") >= 2
    finally:
        worker.stop()

    # A restart on the same disk reads every vector back: none is embedded.
    worker.start()
    try:
        assert embeddings(worker) == {"embedded": 0, "cached": catalog, "removed": 0, "failed": 0}
        assert worker.counter("kairos_product_vectors") == catalog
    finally:
        worker.stop()
