"""Product vectors kept on disk, so a restart embeds only what changed.

One file under the data directory (``embeddings/vectors.npz``): the
vectors of the products in force, each under a key made of the model's
fingerprint and the text it was made from. A restart reads it and embeds
only the texts it has no key for; a different model (another fingerprint)
or a changed text finds nothing. It is a cache, not state: a missing or
unreadable file costs a re-embedding, never a failure, so it is not in
RocksDB with a changelog. Written whole after a pass that changed the
vectors, to a temporary file renamed over the old one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
FILE = Path("embeddings") / "vectors.npz"


def cache_key(fingerprint: str, text: str) -> str:
    return hashlib.sha256(f"{fingerprint}\0{text}".encode()).hexdigest()


def read(path: Path) -> dict[str, np.ndarray]:
    """Vectors by key from ``path``; empty if there is none or it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys, vectors = data["keys"], data["vectors"]
            return {str(k): v.astype(np.float32) for k, v in zip(keys, vectors, strict=True)}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring the product vector cache %s: %r", path, exc)
        return {}


def write(path: Path, vectors: dict[str, np.ndarray]) -> None:
    """Replace ``path`` with ``vectors``; a failure is logged, not raised."""
    keys = sorted(vectors)
    matrix = np.stack([vectors[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)
    partial = path.with_suffix(".partial.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(partial, keys=np.array(keys, dtype="U64"), vectors=matrix)
        os.replace(partial, path)
    except OSError as exc:
        log.warning("could not write the product vector cache %s: %r", path, exc)
