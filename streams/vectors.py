"""Product vectors: product id -> unit float32 vector, in memory.

Held beside the reference data (one per worker, in the Runtime): the fold
reads a product's vector for the taste vector (agents/taste.py), context
selection and the Profile API the products nearest a taste. Nearest
neighbours are one matrix product over every vector, rebuilt after a change:
a catalog of tens of thousands is a few milliseconds, and no index to keep.
"""

from __future__ import annotations

import numpy as np

DIM = 384  # all-MiniLM-L6-v2's


class ProductVectors:
    """Unit vectors by product id; ``nearest`` by cosine."""

    def __init__(self) -> None:
        self._vectors: dict[str, np.ndarray] = {}
        self._matrix: tuple[list[str], np.ndarray] | None = None  # built on first ask

    def get(self, pid: str) -> np.ndarray | None:
        return self._vectors.get(pid)

    def set(self, pid: str, vec: np.ndarray) -> None:
        """Hold ``vec`` for ``pid``, scaled to unit length (a zero vector is refused)."""
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(vec))
        if vec.shape != (DIM,) or not norm > 0 or not np.isfinite(norm):
            raise ValueError(f"product {pid!r}: a vector must be {DIM} finite numbers, not zero")
        self._vectors[pid] = vec / np.float32(norm)
        self._matrix = None

    def remove(self, pid: str) -> None:
        if self._vectors.pop(pid, None) is not None:
            self._matrix = None

    def __len__(self) -> int:
        return len(self._vectors)

    def ids(self) -> list[str]:
        return list(self._vectors)

    def matrix(self) -> np.ndarray:
        """Every vector, one row per id in :meth:`ids` order, shape (n, DIM)."""
        return self._indexed()[1]

    def nearest(
        self, vec: np.ndarray, k: int, among: list[str] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` products (of ``among``, if given) most like ``vec``, by cosine,
        best first; ``vec`` need not be unit length."""
        norm = float(np.linalg.norm(vec))
        if k <= 0 or not norm > 0:
            return []
        query = np.asarray(vec, dtype=np.float32) / np.float32(norm)
        if among is not None:
            ids = [pid for pid in among if pid in self._vectors]
            rows = np.stack([self._vectors[pid] for pid in ids]) if ids else None
        else:
            ids, rows = self._indexed()
        if rows is None or not ids:
            return []
        scores = rows @ query
        top = np.argsort(-scores, kind="stable")[:k]
        return [(ids[i], float(scores[i])) for i in top]

    def _indexed(self) -> tuple[list[str], np.ndarray]:
        if self._matrix is None:
            ids = list(self._vectors)
            rows = np.stack(list(self._vectors.values())) if ids else np.zeros((0, DIM), np.float32)
            self._matrix = (ids, rows)
        return self._matrix
