"""The atheris fuzz target runs, and finds nothing, for a short while in every test run
(`make fuzz` runs it for longer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "fuzz" / "fuzz_decoder.py"


def test_the_decoder_survives_a_short_fuzzing_run() -> None:
    result = subprocess.run(
        [sys.executable, str(TARGET), "-runs=100000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 100000 runs" in result.stderr
