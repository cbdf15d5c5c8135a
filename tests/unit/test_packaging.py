"""The wheel carries what the code reads at run time: every file under a
package's data folder is declared as package data in pyproject.toml."""

from __future__ import annotations

import tomllib

from tests.support.stack import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_data_file_of_streams_is_package_data() -> None:
    globs = PROJECT["tool"]["setuptools"]["package-data"]["streams"]
    package = REPO / "streams"
    files = [p for p in (package / "data").rglob("*") if p.is_file()]
    assert files
    shipped = {p for pattern in globs for p in package.glob(pattern)}
    assert set(files) <= shipped, f"not shipped: {sorted(map(str, set(files) - shipped))}"
