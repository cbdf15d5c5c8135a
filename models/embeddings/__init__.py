"""Text embeddings for products (and whatever else needs a vector).

:class:`Encoder` is the model, loaded once per process: ``Encoder.load()``
then ``encoder.encode(texts)`` gives an ``(n, 384)`` float32 array whose
rows have length 1, so a dot product is a cosine. :func:`encode` does the
same with a process-wide encoder loaded on first use, for tools and tests;
the worker loads its own at start-up and holds it in its Runtime.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from models.embeddings.encoder import DIM, PACKAGE, Encoder, model_folder, packaged_model_dir
from models.embeddings.errors import EmbeddingError

__all__ = ["DIM", "PACKAGE", "EmbeddingError", "Encoder", "default_encoder", "encode",
           "model_folder", "packaged_model_dir"]  # fmt: skip


@cache
def default_encoder() -> Encoder:
    """The packaged model, loaded on the first call and kept."""
    return Encoder.load()


def encode(texts: list[str]) -> np.ndarray:
    """(len(texts), 384) float32 unit rows, from the packaged model."""
    return default_encoder().encode(texts)
