"""Product vectors: held at unit length, nearest by cosine, among a subset."""

from __future__ import annotations

import numpy as np
import pytest

from streams.vectors import DIM, ProductVectors
from tests.support.vectors import unit


def test_vectors_are_held_at_unit_length_and_ranked_by_cosine() -> None:
    vectors = ProductVectors()
    vectors.set("a", unit(1, 0) * 5)
    vectors.set("b", unit(1, 1))
    vectors.set("c", unit(0, 1))
    assert np.isclose(np.linalg.norm(vectors.get("a")), 1.0)  # type: ignore[arg-type]
    assert [pid for pid, _ in vectors.nearest(unit(1, 0.2), 3)] == ["a", "b", "c"]
    assert vectors.nearest(unit(1, 0.2), 2, among=["c", "b", "gone"])[0][0] == "b"
    assert vectors.matrix().shape == (3, DIM) and vectors.ids() == ["a", "b", "c"]


def test_a_removed_product_is_no_longer_found() -> None:
    vectors = ProductVectors()
    vectors.set("a", unit(1))
    vectors.set("b", unit(0, 1))
    assert vectors.nearest(unit(1), 1) == [("a", pytest.approx(1.0))]
    vectors.remove("a")
    assert len(vectors) == 1 and vectors.get("a") is None
    assert [pid for pid, _ in vectors.nearest(unit(1), 5)] == ["b"]
    assert vectors.nearest(np.zeros(DIM, np.float32), 5) == []


@pytest.mark.parametrize("bad", [np.zeros(DIM), np.ones(DIM - 1), np.full(DIM, np.nan)])
def test_a_vector_of_the_wrong_shape_or_zero_is_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="384 finite numbers"):
        ProductVectors().set("a", bad)
