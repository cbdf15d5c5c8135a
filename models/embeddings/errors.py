"""The embedding layer's one error."""

from __future__ import annotations

from streams.errors import KairosError


class EmbeddingError(KairosError):
    """The embedding model cannot be found, read, or run."""
