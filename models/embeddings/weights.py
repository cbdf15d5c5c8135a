"""Read a ``model.safetensors`` file into numpy arrays, without torch.

The format is an 8-byte little-endian header length, a JSON header naming
each tensor's dtype, shape and byte range, then the raw data. The file is
memory-mapped, so only the tensors used are read (MiniLM's pooler is not).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from models.embeddings.errors import EmbeddingError

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def load_tensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of the file by name, as read-only views of the mapped file;
    an EmbeddingError if it is not a safetensors file (truncated, say)."""
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
        (size,) = struct.unpack("<Q", bytes(data[:8]))
        header = json.loads(bytes(data[8 : 8 + size]))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (OSError, ValueError, struct.error) as exc:
        raise EmbeddingError(f"cannot read the model weights {path}: {exc}") from None
    body = data[8 + size :]
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        try:
            tensors[name] = _tensor(body, spec, path, name)
        except (KeyError, TypeError, ValueError) as exc:
            # A cut file leaves a tensor short: reshape says so, without the file's name.
            detail = f"missing {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
            raise EmbeddingError(
                f"the model weights {path} are truncated or corrupt: tensor {name!r}: {detail}"
            ) from None
    return tensors


def _tensor(body: np.ndarray, spec: dict, path: Path, name: str) -> np.ndarray:
    if spec["dtype"] not in DTYPES:
        raise EmbeddingError(f"{path}: tensor {name!r} has unsupported dtype {spec['dtype']}")
    start, end = spec["data_offsets"]
    return body[start:end].view(DTYPES[spec["dtype"]]).reshape(spec["shape"])
