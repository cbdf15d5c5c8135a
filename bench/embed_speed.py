"""The in-process half of bench/embeddings.py, run in a fresh interpreter
(``python -m bench.embed_speed TEXTS.json OUT.npy``): importing and loading
the model are all this process does before it measures, so its start-up
time and memory are the encoder's. Imports nothing of the worker."""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

SINGLES = 3  # rounds over the catalog's texts one at a time
Encode = Callable[[list[str]], np.ndarray]


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += int(status.split("VmRSS:")[1].split()[0])
    return round(total / 1024, 1)


def timed(encode: Encode, texts: list[str], chunk: int | None = None) -> float:
    """Seconds to embed ``texts``, in calls of ``chunk`` (all at once if None)."""
    started = time.perf_counter()
    step = chunk or max(1, len(texts))
    for start in range(0, len(texts), step):
        encode(texts[start : start + step])
    return time.perf_counter() - started


def speeds(
    encode: Encode,
    tag: str,
    texts: dict,
    cpu: Callable[[], float] = time.process_time,
) -> dict:
    """ms per text alone and in a batch of the catalog; seconds (wall and
    the backend's CPU, from ``cpu()``) for the large catalog."""
    catalog = texts["catalog"]
    encode(catalog)  # warm: first-call allocations
    singles = [timed(encode, [t]) * 1000 for _ in range(SINGLES) for t in catalog]
    batched = [timed(encode, catalog) * 1000 / len(catalog) for _ in range(5)]
    used = cpu()
    wall = timed(encode, texts["large"], texts["chunk"])
    return {
        f"embed_{tag}_single_ms_p50": round(statistics.median(singles), 2),
        f"embed_{tag}_single_ms_p99": round(float(np.percentile(singles, 99)), 2),
        f"embed_{tag}_batched_ms_per_text": round(statistics.median(batched), 2),
        f"embed_{tag}_catalog_s": round(wall, 2),
        f"embed_{tag}_catalog_cpu_s": round(cpu() - used, 2),
    }


def main() -> None:
    texts = json.loads(Path(sys.argv[1]).read_text())
    import tokenizers  # noqa: F401  (the baseline: imported by the worker anyway)

    base = rss_mib([os.getpid()])
    from models.embeddings import Encoder

    encoder = Encoder.load()
    encoder.encode(["warm"])
    figures = {
        "embed_inprocess_start_s": round(time.perf_counter() - STARTED, 2),
        "embed_inprocess_rss_mib": rss_mib([os.getpid()]),
        "embed_inprocess_model_rss_mib": round(rss_mib([os.getpid()]) - base, 1),
    }
    figures.update(speeds(encoder.encode, "inprocess", texts))
    np.save(sys.argv[2], encoder.encode(texts["catalog"]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
