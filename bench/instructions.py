"""Instructions per event folded, counted by valgrind's callgrind.

A count of instructions is the same on a busy machine as on a quiet one
(docs/BENCHMARKS.md), so two versions of the fold compare exactly where
their timings would drown in noise. This runs :func:`bench.fold_cost.state_cost`
under callgrind with one pass over its bundles and with three; the
difference, halved, is one pass of the fold alone (decode each profile,
apply the events, encode it), without the start-up, the workload and the
routing that both runs share.

    python -m bench.instructions [--events 3000] [--stage]

With ``--stage`` it counts :func:`bench.stage_cost.stage_cost` instead: the
worker's whole ingest path per event short of Kafka (routing, the fold, the
table writes to memory, the histograms and counters).

Needs valgrind (Debian's package). Python runs some 50 times slower under
it: 3,000 events take a few minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# OpenBLAS's worker threads (the taste vector's sums) spin for as long as
# they happen to, and str hashes change with each run: unpinned, one
# version's count moved by up to 8% from run to run; pinned, by one.
REPEATABLE = {"OPENBLAS_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
# What is counted: the fold alone, or the ingest path around it.
TARGETS = {"fold": "bench.fold_cost:state_cost", "stage": "bench.stage_cost:stage_cost"}


def instructions(events: int, passes: int, target: str = "fold") -> int:
    """Instructions callgrind counts for ``target`` with ``passes`` passes."""
    module, function = TARGETS[target].split(":")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        code = f"from {module} import {function}; {function}({events}, {events // 4}, {passes})"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, "-c", code],
            cwd=REPO, check=True, capture_output=True, env={**os.environ, **REPEATABLE},
        )  # fmt: skip
        found = re.search(rb"^summary: (\d+)", out.read_bytes(), re.M)
        assert found, "callgrind wrote no summary"
        return int(found[1])


def per_event(events: int, target: str = "fold") -> float:
    one, three = instructions(events, 1, target), instructions(events, 3, target)
    return (three - one) / 2 / events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--stage", action="store_true", help="count the whole ingest path")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    target = "stage" if args.stage else "fold"
    print(f"{target}_instructions_per_event: {per_event(args.events, target):,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
