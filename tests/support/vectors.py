"""Small hand-made product vectors for tests, with streams/vectors.py's interface."""

from __future__ import annotations

import numpy as np

from agents.taste import DIM


def unit(*weights: float) -> np.ndarray:
    """A unit float32 vector of DIM whose first components are ``weights``."""
    vec = np.zeros(DIM, dtype=np.float32)
    vec[: len(weights)] = weights
    return vec / np.float32(np.linalg.norm(vec))


class HandMadeVectors:
    """Product id -> unit vector, in memory; brute-force nearest neighbours."""

    def __init__(self, rows: dict[str, np.ndarray] | None = None) -> None:
        self._rows: dict[str, np.ndarray] = dict(rows or {})

    def get(self, pid: str) -> np.ndarray | None:
        return self._rows.get(pid)

    def set(self, pid: str, vec: np.ndarray) -> None:
        self._rows[pid] = vec

    def remove(self, pid: str) -> None:
        self._rows.pop(pid, None)

    def __len__(self) -> int:
        return len(self._rows)

    def ids(self) -> list[str]:
        return list(self._rows)

    def matrix(self) -> np.ndarray:
        return np.stack(list(self._rows.values())) if self._rows else np.zeros((0, DIM))

    def nearest(
        self, vec: np.ndarray, k: int, among: list[str] | None = None
    ) -> list[tuple[str, float]]:
        ids = [p for p in (self._rows if among is None else among) if p in self._rows]
        scored = [(p, float(self._rows[p] @ vec)) for p in ids]
        return sorted(scored, key=lambda s: -s[1])[:k]
