"""Small hand-made product vectors for tests."""

from __future__ import annotations

import numpy as np

from streams.vectors import DIM, ProductVectors


def unit(*weights: float) -> np.ndarray:
    """A unit float32 vector of DIM whose first components are ``weights``."""
    vec = np.zeros(DIM, dtype=np.float32)
    vec[: len(weights)] = weights
    return vec / np.float32(np.linalg.norm(vec))


def hand_made(rows: dict[str, np.ndarray]) -> ProductVectors:
    vectors = ProductVectors()
    for pid, vec in rows.items():
        vectors.set(pid, vec)
    return vectors
