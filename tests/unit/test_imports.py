"""No import cycles: every module imports on its own, in a fresh
interpreter, and no module imports one that imports it back.

A cycle breaks an import only when a module of it is the first one imported,
so each module gets an interpreter of its own: importing them all in one
process would hide every cycle behind whichever module came first. A cycle
that imports in every order (one side importing inside a function) is still
a cycle; the graph test finds those, from the source.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.support.stack import REPO

PACKAGES = ("streams", "agents", "models", "bench")


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


def imported(module: str) -> set[str]:
    """The project modules ``module`` imports, at the top or inside a function."""
    path = REPO / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = REPO / module.replace(".", "/") / "__init__.py"
    known = set(modules())
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{alias.name}" for alias in node.names}
            found |= subs & known or ({node.module} & known)
    return found - {module}


def cycle_from(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of ``graph`` as the modules along it, or [] if it has none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        for nxt in sorted(graph[node]):
            if found := visit(nxt, [*path, node]):
                return found
        done.add(node)
        return []

    for start in sorted(graph):
        if found := visit(start, []):
            return found
    return []


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle() -> None:
    assert cycle_from({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_from({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = {module: imported(module) for module in modules()}
    assert graph["agents.worker"] >= {"agents.context", "agents.ingest"}  # edges are seen
    assert cycle_from(graph) == []
