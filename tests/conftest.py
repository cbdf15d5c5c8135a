"""Shared fixtures: the real broker and vLLM servers, started once per session.

When a real part cannot start, the tests that need it fail with the reason
(the process's log tail). Nothing is skipped.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Settings read in-process (unit tests' apps and policies) default to
# in-memory tables and a scratch data directory; workers started by tests get
# their own settings.
os.environ["KAIROS_STORE"] = "memory://"
os.environ["KAIROS_DATA_DIR"] = tempfile.mkdtemp(prefix="kairos-tests-")

import pytest

from models.server import MAX_MODEL_LEN, LLMServerError, ensure_model, healthy, runtime_python
from streams.settings import Settings
from streams.tools.broker import start_broker
from streams.tools.process import ManagedProcess, free_port
from tests.support.stack import REPO
from tests.support.tiny_llama import MAX_POSITIONS

VLLM_READY_TIMEOUT_S = 300.0


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh embedded Kafka for the session; yields its bootstrap address."""
    port = free_port()
    home = tmp_path_factory.mktemp("broker")
    process = start_broker(port, home, home / "broker.log")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


def _serve(
    model_dir: Path, name: str, log: Path, max_model_len: int = MAX_MODEL_LEN
) -> tuple[ManagedProcess, str]:
    from models.server import vllm_process

    settings = Settings(llm_port=free_port(), llm_model=name)
    process = vllm_process(settings, model_dir, log, max_model_len)
    process.start()
    process.wait_ready(lambda: healthy(settings.llm_base_url), VLLM_READY_TIMEOUT_S, interval=1.0)
    return process, settings.llm_base_url


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """vLLM serving a tiny random-weight Llama built now; yields (url, model name)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    python = runtime_python(Settings())
    result = subprocess.run(
        [str(python), str(REPO / "tests" / "support" / "tiny_llama.py"), str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"building the tiny Llama failed:\n{result.stderr[-3000:]}")
    # All its positions: its prompts are longer than the embedded server's 512
    # (tests/support/tiny_llama.py), and a longer one is refused with a 400.
    process, url = _serve(folder, "tiny-llama", folder / "vllm.log", MAX_POSITIONS)
    try:
        yield url, "tiny-llama"
    finally:
        process.stop()


@pytest.fixture(scope="session")
def smollm2_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """vLLM serving SmolLM2-135M-Instruct (converted once into .kairos/models)."""
    logs = tmp_path_factory.mktemp("smollm2")
    settings = Settings(data_dir=REPO / ".kairos")
    try:
        folder = ensure_model(settings, logs / "convert.log")
    except LLMServerError as exc:
        pytest.fail(str(exc))
    process, url = _serve(folder, "smollm2-135m-instruct", logs / "vllm.log")
    try:
        yield url, "smollm2-135m-instruct"
    finally:
        process.stop()
