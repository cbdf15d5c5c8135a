"""A BERT encoder's forward pass in numpy: the 6-layer MiniLM of
all-MiniLM-L6-v2, read from its safetensors weights.

Inference only (no dropout), float32 throughout, post-layer-norm blocks as
in Hugging Face's ``BertModel``. Linear weights are transposed once at load
so each projection is one ``x @ W``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.embeddings.errors import EmbeddingError

# Abramowitz and Stegun 7.1.26: erfc to within 1.5e-7, below float32's
# resolution at these magnitudes. numpy has no erf, and the model's "gelu"
# is the exact one, not the tanh approximation.
_P = np.float32(0.3275911)
_A = tuple(np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027,
                                   1.061405429))  # fmt: skip


def gelu(x: np.ndarray) -> np.ndarray:
    """x * Phi(x), exactly as far as float32 goes: with q = erfc(|x| / sqrt 2),
    x * (1 - q / 2) for x >= 0 and x * q / 2 below. In place where it can be:
    the intermediate layer's activations are the encoder's largest arrays, and
    fresh temporaries made this a third of its time."""
    a = np.abs(x)
    a *= np.float32(0.7071067811865476)
    t = a * _P
    t += 1
    np.reciprocal(t, out=t)
    q = t * _A[4]
    for coefficient in (_A[3], _A[2], _A[1], _A[0]):
        q += coefficient
        q *= t
    np.square(a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    q *= a
    q *= np.float32(0.5)
    out = np.where(x >= 0, 1 - q, q)
    out *= x
    return out


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(eps)) * weight + bias


@dataclass(frozen=True)
class Layer:
    qkv: np.ndarray  # (hidden, 3 * hidden): query, key and value in one product
    qkv_bias: np.ndarray
    out: np.ndarray
    out_bias: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


class Bert:
    """The encoder stack; :meth:`hidden` gives the last layer's token states."""

    def __init__(self, tensors: dict[str, np.ndarray], config: dict) -> None:
        try:
            self.heads = int(config["num_attention_heads"])
            self.eps = float(config.get("layer_norm_eps", 1e-12))
            self.words = _f32(tensors["embeddings.word_embeddings.weight"])
            self.positions = _f32(tensors["embeddings.position_embeddings.weight"])
            self.token_type = _f32(tensors["embeddings.token_type_embeddings.weight"][0])
            self.norm = _pair(tensors, "embeddings.LayerNorm")
            self.layers = [_layer(tensors, f"encoder.layer.{i}.")
                           for i in range(int(config["num_hidden_layers"]))]  # fmt: skip
        except KeyError as exc:
            raise EmbeddingError(f"the model has no {exc.args[0]!r} (not a BERT model?)") from None
        self.dim = self.words.shape[1]
        self.max_positions = self.positions.shape[0]

    def hidden(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(batch, tokens, dim) states for token ``ids`` where ``mask`` is 1."""
        batch, length = ids.shape
        x = self.words[ids] + self.positions[:length] + self.token_type
        # One row per token: each projection is then one matrix product over
        # the whole batch (about 1.6 times faster than one per text).
        x = layer_norm(x.reshape(batch * length, self.dim), *self.norm, self.eps)
        # Padding gets a large negative score, so softmax gives it no weight.
        bias = np.where(mask[:, None, None, :] > 0, 0, -1e9).astype(np.float32)
        for layer in self.layers:
            x = self._block(x, bias, layer)
        return x.reshape(batch, length, self.dim)

    def _block(self, x: np.ndarray, bias: np.ndarray, layer: Layer) -> np.ndarray:
        batch, _, _, length = bias.shape
        dim, head = self.dim, self.dim // self.heads
        qkv = (x @ layer.qkv + layer.qkv_bias).reshape(batch, length, 3, self.heads, head)
        q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head)) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, dim)
        x = layer_norm(context @ layer.out + layer.out_bias + x, *layer.norm1, self.eps)
        inner = gelu(x @ layer.up + layer.up_bias)
        return layer_norm(inner @ layer.down + layer.down_bias + x, *layer.norm2, self.eps)


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def _pair(tensors: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    return _f32(tensors[f"{name}.weight"]), _f32(tensors[f"{name}.bias"])


def _layer(tensors: dict[str, np.ndarray], prefix: str) -> Layer:
    def weight(name: str) -> np.ndarray:
        return _f32(tensors[prefix + name + ".weight"].T)

    def bias(name: str) -> np.ndarray:
        return _f32(tensors[prefix + name + ".bias"])

    attention = ("attention.self.query", "attention.self.key", "attention.self.value")
    return Layer(
        qkv=np.concatenate([weight(n) for n in attention], axis=1),
        qkv_bias=np.concatenate([bias(n) for n in attention]),
        out=weight("attention.output.dense"),
        out_bias=bias("attention.output.dense"),
        norm1=_pair(tensors, prefix + "attention.output.LayerNorm"),
        up=weight("intermediate.dense"),
        up_bias=bias("intermediate.dense"),
        down=weight("output.dense"),
        down_bias=bias("output.dense"),
        norm2=_pair(tensors, prefix + "output.LayerNorm"),
    )
