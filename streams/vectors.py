"""Product vectors: one unit float32 vector per product id, in memory.

Kept as rows of one matrix, so the nearest products to a vector are one
matrix-vector product (about 10k x 384 floats for a large catalog) and a
partial sort, cheap enough per moment. Rows are updated in place; a removed
product's row is taken by the last row, so the matrix stays dense.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet

import numpy as np

DIM = 384


class ProductVectors:
    """Product id -> unit vector of ``dim`` floats; cosine nearest neighbours."""

    def __init__(self, dim: int = DIM) -> None:
        self.dim = dim
        self._rows: dict[str, int] = {}
        self._ids: list[str] = []
        self._matrix = np.zeros((0, dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, pid: object) -> bool:
        return pid in self._rows

    def ids(self) -> tuple[str, ...]:
        return tuple(self._ids)

    def get(self, pid: str) -> np.ndarray | None:
        """A copy of the product's vector, or None if it has none."""
        row = self._rows.get(pid)
        return None if row is None else self._matrix[row].copy()

    def set(self, pid: str, vec: np.ndarray) -> None:
        """Give ``pid`` the vector ``vec``, normalised to length 1."""
        unit = _unit(vec, self.dim)
        row = self._rows.get(pid)
        if row is None:
            row = len(self._ids)
            self._grow(row + 1)
            self._rows[pid] = row
            self._ids.append(pid)
        self._matrix[row] = unit

    def update(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        for pid, vec in items:
            self.set(pid, vec)

    def remove(self, pid: str) -> None:
        """Forget ``pid``'s vector (nothing if it has none)."""
        row = self._rows.pop(pid, None)
        if row is None:
            return
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._matrix[row] = self._matrix[last]
            self._ids[row] = moved
            self._rows[moved] = row
        self._ids.pop()

    def matrix(self) -> tuple[tuple[str, ...], np.ndarray]:
        """(ids, (n, dim) array) with row i the vector of ids[i]; a copy."""
        n = len(self._ids)
        return tuple(self._ids), self._matrix[:n].copy()

    def nearest(
        self, vec: np.ndarray, k: int, among: AbstractSet[str] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` products most like ``vec`` by cosine, best first, as
        (id, cosine); only those in ``among`` if it is given."""
        query = _unit(vec, self.dim)
        if among is None:  # a view of the rows in use: no copy of the matrix
            rows, scores = None, self._matrix[: len(self._ids)] @ query
        else:  # score only the candidates: a short list stays cheap on a long catalog
            rows = np.array(sorted(self._rows[p] for p in among if p in self._rows), dtype=int)
            scores = self._matrix[rows] @ query
        k = min(k, len(scores))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        picked = top if rows is None else rows[top]
        return [(self._ids[r], float(s)) for r, s in zip(picked, scores[top], strict=True)]

    def _grow(self, rows: int) -> None:
        if rows > self._matrix.shape[0]:
            grown = np.zeros((max(rows, 2 * self._matrix.shape[0], 64), self.dim), np.float32)
            grown[: len(self._ids)] = self._matrix[: len(self._ids)]
            self._matrix = grown


def _unit(vec: np.ndarray, dim: int) -> np.ndarray:
    vec = np.asarray(vec, dtype=np.float32).reshape(-1)
    if vec.shape != (dim,):
        raise ValueError(f"expected a vector of {dim} floats, got shape {vec.shape}")
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("a product vector must be finite and non-zero")
    return vec / np.float32(norm)
