"""Every module imports on its own, in a fresh interpreter.

An import cycle shows only when a module of the cycle is the first one
imported, so each module gets an interpreter of its own: importing them all
in one process would hide every cycle behind whichever module came first.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.support.stack import REPO

PACKAGES = ("streams", "agents", "models")


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def import_alone(module: str) -> str | None:
    """None if ``module`` imports in a fresh interpreter, else the error's last line."""
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == 0:
        return None
    return result.stderr.strip().splitlines()[-1]


def test_the_packages_have_modules_to_check() -> None:
    assert {"streams.settings", "agents.ingest", "models.context"} <= set(modules())


def test_every_module_imports_alone_without_a_cycle() -> None:
    names = modules()
    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = {m: e for m, e in zip(names, pool.map(import_alone, names), strict=True) if e}
    assert failures == {}
