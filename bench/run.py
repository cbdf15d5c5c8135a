"""``make bench``: measure kairos on this machine, with the demo's settings.

Ingest: a fresh embedded Kafka; a backlog of N source events from U users
(clickstream, location and CRM, with anonymous visitors who identify, 1%
producer retries and 1% invalid records) is produced first; then one worker
process (the demo's settings) drains it. The clock starts when the worker's
ingest has taken its first batch and stops when ``kairos_state_updates_total``
counts every valid, distinct event: decoded, validated, deduplicated,
identity-resolved and folded into its person's RocksDB profile, with the
changelog written. Worker peak RSS comes from /proc. Results go to
bench/results.json (one named number per key, merged with what is there)
and docs/BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.embeddings import embeddings
from bench.fold_cost import state_cost, workload
from bench.freshness import freshness
from bench.llm import bench_broker, llm, stand_in
from bench.measure import sample
from bench.recommend import run as recommend
from bench.report import REPORT, RESULTS, write
from bench.stack import EVENTS, RESTART_USERS, ROOT, RUNS, USERS, stack_settings
from streams.runtime.admin import create_topics
from streams.settings import Settings, settings_env
from streams.tools.process import ManagedProcess
from streams.tools.producer import EventProducer


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


async def produce_all(settings: Settings, items: list[tuple[str, dict[str, Any] | bytes]]) -> float:
    producer = EventProducer(settings)
    await producer.start()
    started = time.monotonic()
    try:
        for source, event in items:
            if isinstance(event, bytes):
                await producer.send_raw(source, event)
            else:
                await producer.send_raw(source, orjson.dumps(event), event.get("userId"))
        await producer.flush()
    finally:
        await producer.stop()
    return time.monotonic() - started


POISON = (
    b"",
    b"\xff\xfe not utf-8",
    b'{"type": "track", "userId": "u1", ',
    b'{"type": "track", "userId": "u1", "properties": {}}',
    b'{"type": "teleport", "userId": "u1"}',
    b'{"type": "page", "userId": "u1", "timestamp": "yesterday"}',
    b"[1, 2, 3]",
)


def flooded(items: list[tuple[str, dict[str, Any] | bytes]]) -> list[tuple[str, Any]]:
    """``items`` with a poison record (of seven kinds, in turn) after each one."""
    out: list[tuple[str, Any]] = []
    for n, item in enumerate(items):
        out += [item, ("clickstream", POISON[n % len(POISON)])]
    return out


def ingest(events: int, users: int, flood: bool = False) -> dict[str, float]:
    """Drain a backlog of ``events`` through one worker; events/s once it is flowing.

    With ``flood``, a poison record follows every event: figures are keyed
    ``poison_flood_*``."""
    workdir, settings, env = stack_settings()
    web = settings.web_port
    items = workload(events, users)
    if flood:
        items = flooded(items)
    invalid = sum(1 for _, event in items if isinstance(event, bytes))
    duplicates = len(items) - invalid - len({id(e) for _, e in items if isinstance(e, dict)})
    expected = len(items) - invalid - duplicates
    broker = bench_broker(settings, workdir)
    worker = ManagedProcess(
        "worker",
        [sys.executable, "-m", "streams.tools.cli", "worker"],
        workdir / "worker.log",
        env=env,
    )
    try:
        asyncio.run(create_topics(settings))
        produce_s = asyncio.run(produce_all(settings, items))
        worker.start()
        first: tuple[float, float] | None = None
        deadline = time.monotonic() + 900
        client = httpx.Client(timeout=5)
        while True:
            try:
                text = client.get(f"http://127.0.0.1:{web}/metrics").text
            except httpx.HTTPError:
                text = ""
            now, done = time.monotonic(), sample(text, "kairos_state_updates_total")
            if first is None and sample(text, "kairos_ingest_batch_records_count") > 0:
                first = (now, done)  # ingest has taken its first batch: the clock starts
            if done >= expected:
                break
            if now > deadline:
                raise SystemExit(f"the worker applied {done:.0f} of {expected} events in 900 s")
            time.sleep(0.1)
        assert first is not None and worker.proc is not None
        rss = peak_rss_mib(worker.proc.pid)
        writes = sample(text, "kairos_state_writes_total")
        dropped = sample(text, "kairos_duplicates_total")
    finally:
        worker.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = now - first[0]
    rate = round((done - first[1]) / elapsed) if elapsed > 0 else 0
    if flood:
        dead = sum(float(v) for v in re.findall(r"^kairos_dead_letters_total\{.*\} (\S+)$",
                                                 text, re.M))  # fmt: skip
        return {"poison_flood_good_events_per_s": rate, "poison_flood_dead_letters": dead,
                "poison_flood_records": len(items)}  # fmt: skip
    return {
        "ingest_events_per_s": rate,
        "ingest_state_writes_per_event": round(writes / done, 3),
        "ingest_duplicates_dropped": dropped,
        "producer_events_per_s": round(len(items) / produce_s),
        "worker_peak_rss_mib": round(rss, 1),
    }


def people(users: int, seed: int = 11) -> list[tuple[str, dict[str, Any]]]:
    """Each of ``users`` people: traits, three product views, a page, a store ping."""
    rng = random.Random(seed)
    base = 1_795_000_000_000
    out: list[tuple[str, dict[str, Any]]] = []
    for u in range(users):
        user, ts = f"u{u}", base + u * 10
        out.append(("clickstream", {"type": "identify", "userId": user, "timestamp": ts,
                                    "messageId": f"i{u}", "traits": {"first_name": f"N{u}",
                                    "loyalty_tier": rng.choice(["gold", "silver"])}}))  # fmt: skip
        for k in range(3):
            out.append(("clickstream", {"type": "track", "event": "Product Viewed", "userId": user,
                                        "timestamp": ts + 1 + k, "messageId": f"v{u}-{k}",
                                        "properties": {"product_id": f"p-{100 + rng.randrange(18)}",
                                                       "category": "running"}}))  # fmt: skip
        out.append(("clickstream", {"type": "page", "name": "/catalog", "userId": user,
                                    "timestamp": ts + 5, "messageId": f"g{u}"}))  # fmt: skip
        out.append(("location", {"userId": user, "lat": 40.0 + rng.random(), "lon": -73.5,
                                 "timestamp": ts + 6, "messageId": f"l{u}"}))  # fmt: skip
    return out


def restart(users: int) -> dict[str, float]:
    """State of ``users`` people in one worker; then a clean restart, timed to
    /ready; then one more with the worker's disk deleted, so that its state
    comes back from the compacted changelog."""
    workdir, settings, env = stack_settings()
    web = settings.web_port
    items = people(users)
    broker = bench_broker(settings, workdir)
    argv = [sys.executable, "-m", "streams.tools.cli", "worker"]
    worker = ManagedProcess("worker", argv, workdir / "worker.log", env=env)
    client = httpx.Client(timeout=5)

    def ready() -> bool:
        try:
            return client.get(f"http://127.0.0.1:{web}/ready").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        asyncio.run(create_topics(settings))
        asyncio.run(produce_all(settings, items))  # type: ignore[arg-type]
        worker.start()
        deadline = time.monotonic() + 900
        while sample(client.get(f"http://127.0.0.1:{web}/metrics").text if ready() else "",
                      "kairos_state_updates_total") < len(items):  # fmt: skip
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not apply the restart benchmark's events")
            time.sleep(0.2)
        worker.stop()
        tables = workdir / "worker" / "v1" / "tables"
        disk = sum(f.stat().st_size for f in tables.rglob("*") if f.is_file())
        stored = stored_profiles(tables)
        worker.start()
        ready_s = worker.wait_ready(ready, timeout=120, interval=0.05)
        metrics = client.get(f"http://127.0.0.1:{web}/metrics").text
        replayed = sample(metrics, "kairos_state_updates_total")
        worker.stop()
        compacted = wait_compacted(workdir / "kafka")
        shutil.rmtree(workdir / "worker")
        worker.start()
        recovery_s = worker.wait_ready(ready, timeout=600, interval=0.05)
        assert worker.proc is not None
        recovery_rss = peak_rss_mib(worker.proc.pid)
        text = client.get(f"http://127.0.0.1:{web}/metrics").text
        restored = sample(text, "kairos_changelog_restored_records_total", '{table="profiles"}')
        worker.stop()
        recovered = stored_profiles(tables)[0]
    finally:
        worker.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    count, total = stored
    return {
        "restart_ready_s": round(ready_s, 2),
        "restart_users": count,
        "restart_events_reapplied": replayed,
        "recovery_from_changelog_s": round(recovery_s, 2),
        "recovery_users": recovered,
        "recovery_changelog_mib": compacted,
        "recovery_records_restored": restored,
        "recovery_peak_rss_mib": round(recovery_rss, 1),
        "state_bytes_per_user": round(total / count),
        "state_disk_bytes_per_user": round(disk / count),
    }


def wait_compacted(kafka: Path, quiet_s: float = 20.0, limit_s: float = 240.0) -> float:
    """Wait until the log cleaner has compacted the changelog's closed segments,
    as it does in steady state: its partitions' bytes on the broker's disk no
    longer shrink for ``quiet_s`` (the cleaner looks every 15 s). The MiB left;
    0 for a cluster elsewhere (``BENCH_BROKER``), which is not waited for."""
    size, since, deadline = -1, time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < deadline:
        now = sum(f.stat().st_size for f in kafka.glob("**/*profiles-changelog-*/*.log"))
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
        time.sleep(1.0)
    return round(max(size, 0) / 2**20, 1)


def stored_profiles(tables: Path) -> tuple[int, int]:
    """Profiles in the worker's RocksDB partitions, and their value bytes."""
    import rocksdict

    count = total = 0
    for path in sorted(tables.glob("profiles-*.db")):
        db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True),
                             access_type=rocksdict.AccessType.read_only())  # fmt: skip
        for key, value in db.items():
            if not key.startswith(b"__faust"):
                count += 1
                total += len(value)
        db.close()
    return count, total


def main() -> int:
    runs = []
    for n in range(RUNS):
        print(
            f"ingest, run {n + 1} of {RUNS}: {EVENTS:,} events from {USERS:,} users, one worker..."
        )
        runs.append(ingest(EVENTS, USERS))
        print(f"  ingest_events_per_s {runs[-1]['ingest_events_per_s']:g}")
    figures = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(f"poison flood: {EVENTS:,} events, each followed by a poison record...")
    figures.update(ingest(EVENTS, USERS, flood=True))
    print(f"state: {RESTART_USERS:,} people in one worker, then a clean restart...")
    figures.update(restart(RESTART_USERS))
    figures.update(state_cost(EVENTS, USERS))
    print("freshness per feature family at 1,000 events/s...")
    figures.update(freshness(stack_settings()))
    print("offers against a stand-in model server: live traffic...")
    figures.update(stand_in(stack_settings()))
    print("the same without transactions (KAIROS_OFFERS_EXACTLY_ONCE=false)...")
    workdir, settings, _ = stack_settings()
    plain = settings.model_copy(update={"offers_exactly_once": False})
    figures.update(stand_in((workdir, plain, settings_env(plain)), tag="stand_in_no_txn"))
    print("offers against vLLM on CPU: a burst, then live traffic, then a stalled server...")
    figures.update(llm(stack_settings()))
    print("product embeddings: in-process (numpy) and vLLM's /v1/embeddings...")
    figures.update(embeddings())
    print("recommendation quality: synthetic shoppers and MovieLens 100K...")
    figures.update(recommend(400, 12, with_movielens=True))
    for key, value in figures.items():
        print(f"  {key:30} {value:g}")
    rates = [run["ingest_events_per_s"] for run in runs]
    write(figures, min(rates), max(rates))
    print(f"wrote {RESULTS.relative_to(ROOT)} and {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
