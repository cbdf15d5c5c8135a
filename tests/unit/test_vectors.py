"""Product vectors: set, replace, remove, and cosine nearest neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from streams.vectors import DIM, ProductVectors


def axis(i: int, scale: float = 1.0) -> np.ndarray:
    vec = np.zeros(DIM, dtype=np.float32)
    vec[i] = scale
    return vec


def brute_force(vectors: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[str]:
    scores = {pid: float(v @ query / np.linalg.norm(v) / np.linalg.norm(query))
              for pid, v in vectors.items()}  # fmt: skip
    return sorted(scores, key=lambda pid: -scores[pid])[:k]


def test_vectors_are_stored_normalised_and_copied_out() -> None:
    vectors = ProductVectors()
    vectors.set("p-1", axis(3, scale=5.0))
    got = vectors.get("p-1")
    assert got is not None and got.dtype == np.float32 and np.allclose(got, axis(3))
    got[3] = 9.0  # a copy: the store is unchanged
    assert np.allclose(vectors.get("p-1"), axis(3))
    assert vectors.get("p-2") is None and len(vectors) == 1 and "p-1" in vectors


def test_replace_and_remove_keep_ids_and_matrix_rows_together() -> None:
    vectors = ProductVectors()
    for n in range(5):
        vectors.set(f"p-{n}", axis(n))
    vectors.set("p-2", axis(10))  # replaced in place
    vectors.remove("p-1")  # the last row moves into its place
    vectors.remove("p-missing")
    ids, matrix = vectors.matrix()
    assert sorted(ids) == ["p-0", "p-2", "p-3", "p-4"] and matrix.shape == (4, DIM)
    for pid, row in zip(ids, matrix, strict=True):
        assert np.allclose(row, vectors.get(pid))
    assert np.allclose(vectors.get("p-2"), axis(10)) and vectors.ids() == ids


def test_nearest_agrees_with_a_scan_of_every_vector() -> None:
    rng = np.random.default_rng(5)
    raw = {f"p-{n}": rng.normal(size=DIM).astype(np.float32) for n in range(300)}
    vectors = ProductVectors()
    for pid, vec in raw.items():
        vectors.set(pid, vec)
    for pid in list(raw)[::7]:
        vectors.remove(pid)
        del raw[pid]
    query = rng.normal(size=DIM).astype(np.float32)
    found = vectors.nearest(query, 10)
    assert [pid for pid, _ in found] == brute_force(raw, query, 10)
    scores = [score for _, score in found]
    assert scores == sorted(scores, reverse=True) and -1 <= scores[-1] <= scores[0] <= 1


def test_nearest_among_a_subset_and_small_k() -> None:
    vectors = ProductVectors()
    for n in range(6):
        vectors.set(f"p-{n}", axis(0) + axis(n + 1, scale=0.1 * (n + 1)))
    query = axis(0)
    assert [pid for pid, _ in vectors.nearest(query, 2)] == ["p-0", "p-1"]
    assert [pid for pid, _ in vectors.nearest(query, 9, among={"p-4", "p-2", "x"})] == [
        "p-2", "p-4"
    ]  # fmt: skip
    assert vectors.nearest(query, 3, among=set()) == [] and vectors.nearest(query, 0) == []
    assert ProductVectors().nearest(query, 3) == []


@pytest.mark.parametrize("bad", [np.zeros(DIM), np.ones(DIM - 1), np.full(DIM, np.nan)])
def test_a_zero_misshapen_or_nan_vector_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="vector"):
        ProductVectors().set("p-1", bad)
