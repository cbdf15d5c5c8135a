"""Durable by default, on real Apache Kafka.

The topics kairos creates carry their configs, read back from the broker.
A broker killed with SIGKILL mid-stream and restarted on its data loses no
event and no state update, applies none twice, and the worker carries on.
A worker whose disk is deleted rebuilds every person from the compacted
changelog.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
import rocksdict
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from agents.clock import CLOCK_PREFIX
from streams.runtime.admin import create_topics
from streams.runtime.changelog import FAUST_KEYS
from streams.runtime.topics import topic_specs
from streams.settings import Settings
from streams.tools.broker import start_broker
from streams.tools.process import free_port
from tests.support.durable import DurableProducer
from tests.support.stack import Worker, settings_for_test

pytestmark = pytest.mark.broker
NO_LLM = "http://127.0.0.1:9/v1"
DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs' config_source: set on the topic itself


# -- topic configs -----------------------------------------------------------------------


async def topic_configs(
    settings: Settings, names: list[str]
) -> tuple[dict[str, dict[str, tuple[str, int]]], dict[str, list[list[int]]], list[str]]:
    """Per topic, each config's (value, source); each partition's replicas; and
    every topic the broker has."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        configs: dict[str, dict[str, tuple[str, int]]] = {}
        for response in await admin.describe_configs(resources):
            for error, message, _type, name, entries in response.resources:
                assert error == 0, f"{name}: {message}"
                configs[name] = {entry[0]: (entry[1], entry[3]) for entry in entries}
        replicas = {
            topic["topic"]: [p["replicas"] for p in topic["partitions"]]
            for topic in await admin.describe_topics(names)
        }
        existing = await admin.list_topics()
    finally:
        await admin.close()
    return configs, replicas, existing


def test_every_topic_kairos_creates_carries_its_declared_configs(
    broker: str, tmp_path: Path
) -> None:
    """Configs, partitions and replicas read back from the broker, after a worker
    has run, against topic_specs; and compaction for the two topics that hold state."""
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path, partitions=3)
    worker = Worker(settings)  # creates the topics, then runs on them
    worker.start()
    worker.stop()
    specs = topic_specs(settings)
    configs, replicas, existing = asyncio.run(topic_configs(settings, [s.name for s in specs]))

    # Nothing the worker ran created a topic of its own, which would lack these configs.
    assert sorted(t for t in existing if t.startswith(settings.app_id)) == sorted(
        s.name for s in specs
    )
    for spec in specs:
        held = configs[spec.name]
        for key, value in spec.config.items():
            assert held[key] == (value, DYNAMIC_TOPIC_CONFIG), (spec.name, key)
        want = (str(settings.min_insync_replicas), DYNAMIC_TOPIC_CONFIG)
        assert held["min.insync.replicas"] == want, (spec.name, "min.insync.replicas")
        assert len(replicas[spec.name]) == spec.partitions, spec.name
        assert all(len(r) == settings.replication_factor for r in replicas[spec.name])
    changelog = f"{settings.topics.internal_prefix}profiles-changelog"
    for name in (settings.topics.reference, changelog):
        assert configs[name]["cleanup.policy"][0] == "compact", name
        assert configs[name]["retention.ms"][0] == "-1", name  # compacted, never deleted
    assert len(replicas[changelog]) == settings.partitions
    assert configs[settings.topics.clickstream]["cleanup.policy"][0] == "delete"


# -- a broker killed mid-stream and restarted ---------------------------------------------


def page_views(users: int, per_user: int, start_ms: int) -> list[dict[str, Any]]:
    """``per_user`` page views for each of ``users`` people, interleaved; every
    seventh sent twice (the same messageId: a producer's retry)."""
    events: list[dict[str, Any]] = []
    for n in range(users * per_user):
        event = {"type": "page", "name": f"/p{n}", "userId": f"d{n % users}",
                 "timestamp": start_ms + n, "messageId": f"dur-{n}"}  # fmt: skip
        events.append(event)
        if n % 7 == 0:
            events.append(dict(event))
    return events


def views_by_person(settings: Settings, users: int, at: int) -> dict[str, int]:
    """Each person's page views in the 24-hour window at ``at``, from the Profile API."""
    api = f"http://127.0.0.1:{settings.web_port}/v1/profiles"
    counts = {}
    with httpx.Client(timeout=10) as client:
        for u in range(users):
            answer = client.get(f"{api}/d{u}/features?at={at}")
            counts[f"d{u}"] = (
                answer.json()["features"]["windows"]["24h"]["events"]
                if answer.status_code == 200
                else -answer.status_code
            )
    return counts


def wait_for_views(
    settings: Settings, users: int, at: int, want: dict[str, int], seconds: float
) -> dict[str, int]:
    """Poll views_by_person until it is ``want``, passes it, or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    counts = views_by_person(settings, users, at)
    while counts != want and time.monotonic() < deadline:
        if all(counts[p] > want[p] for p in want):
            break  # past what was sent: doubled, waiting more cannot fix it
        time.sleep(0.5)
        counts = views_by_person(settings, users, at)
    return counts


def ready(settings: Settings) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{settings.web_port}/ready", timeout=2).is_success
    except httpx.HTTPError:
        return False


def test_a_broker_killed_mid_stream_and_restarted_on_its_data_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    """SIGKILL the broker a third of the way into a stream of page views, restart
    it on the same data and port, keep producing. Every person's view count is
    exactly the views delivered, the worker is still running and ready, and the
    changelog holds the same state: a worker rebuilt from it alone agrees."""
    users, per_user = 40, 100  # under the dedupe window (128 ids) per person
    port, home = free_port(), tmp_path / "kafka"
    broker = start_broker(port, home, tmp_path / "broker.log")
    settings = settings_for_test(f"127.0.0.1:{port}", NO_LLM, "none", tmp_path / "kairos",
                                 partitions=4)  # fmt: skip
    now = int(time.time() * 1000)
    start_ms = now - 3_600_000
    events = page_views(users, per_user, start_ms)
    worker = Worker(settings)
    producer = DurableProducer(settings, events)
    try:
        worker.start()
        producer.start()
        assert producer.a_third_sent.wait(120), "the producer never got a third of the way"
        broker.kill()  # mid-stream: the worker and the producer both lose it
        time.sleep(2.0)  # the outage is this and the broker's start (about 12 s here)
        broker = start_broker(port, home, tmp_path / "broker.log")
        producer.join(180)
        sent = {person: len(ids) for person, ids in producer.delivered.items()}
        assert sent == {f"d{u}": per_user for u in range(users)}  # all delivered, in the end
        counts = wait_for_views(settings, users, now, sent, seconds=120)
        assert worker.process.running, worker.process.tail(40)
        assert counts == sent, worker.process.tail(40)
        # Ready again once its groups have rejoined (their sessions ran out in the
        # outage); wait_ready fails, with the log's tail, if it exits or never is.
        worker.process.wait_ready(lambda: ready(settings), timeout=60)
        duplicates = worker.counter("kairos_duplicates_total")
        worker.stop()
        assert duplicates >= len(events) - users * per_user  # the retries, at least

        shutil.rmtree(settings.data_dir / "worker")  # from the changelog alone
        worker = Worker(settings)
        worker.start()
        assert views_by_person(settings, users, now) == sent
        assert worker.counter("kairos_state_updates_total") == 0  # rebuilt, not re-applied
    finally:
        producer.close()
        worker.stop()
        broker.stop()


# -- a worker's disk deleted ---------------------------------------------------------------

# People whose state a worker rebuilds from the changelog. Measured on 2 cores,
# Kafka, the worker and the test on one machine with another test run going:
# the test takes about 65 s (the backlog of 200,000 events produced in 8 s
# and folded in 12 s, the rebuild from the changelog to /ready 28 s).
PEOPLE = 100_000
SAMPLE = 300  # people compared through the Profile API; all of them on disk


def person_events(people: int, start_ms: int) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) for the clickstream: per person an identify with traits and
    a product view."""
    rng = random.Random(5)
    for u in range(people):
        user, ts = f"r{u}", start_ms + u
        traits = {"first_name": f"N{u}", "tier": rng.choice(["gold", "silver"])}
        identify = {"type": "identify", "userId": user, "timestamp": ts, "messageId": f"ri{u}",
                    "traits": traits}  # fmt: skip
        view = {"type": "track", "event": "Product Viewed", "userId": user, "timestamp": ts + 1,
                "messageId": f"rv{u}", "properties": {"product_id": f"p-{100 + rng.randrange(18)}",
                                                      "category": "running"}}  # fmt: skip
        yield user.encode(), orjson.dumps(identify)
        yield user.encode(), orjson.dumps(view)


async def produce_backlog(settings: Settings, records: Iterator[tuple[bytes, bytes]]) -> int:
    """Send ``records`` to the clickstream as fast as one producer goes; how many."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                enable_idempotence=True, linger_ms=20,
                                max_batch_size=256 * 1024)  # fmt: skip
    await producer.start()
    sent = 0
    try:
        topic = settings.topics.clickstream
        for key, value in records:
            await producer.send(topic, value, key=key)
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def stored_state(worker_dir: Path) -> tuple[int, str]:
    """The people in the profiles table of the worker's RocksDB (Faust's own
    keys and the partitions' clocks left out) and a digest of every key and
    value, clocks included, partition by partition."""
    digest = hashlib.blake2b(digest_size=16)
    count = 0
    tables = worker_dir / "v1" / "tables"
    paths = sorted(tables.glob("profiles-*.db"))
    assert paths, f"no profiles partitions under {tables}"
    for path in paths:
        db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True),
                             access_type=rocksdict.AccessType.read_only())  # fmt: skip
        try:
            digest.update(path.name.encode())
            entries = cast(Iterator[tuple[bytes, bytes]], db.items())  # raw mode: bytes
            for key, value in entries:
                if not key.startswith(FAUST_KEYS):
                    count += not key.startswith(CLOCK_PREFIX)
                    digest.update(len(key).to_bytes(4, "big") + key)
                    digest.update(len(value).to_bytes(4, "big") + value)
        finally:
            db.close()
    return count, digest.hexdigest()


def sample_views(settings: Settings, people: list[str], at: int) -> dict[str, Any]:
    """Each person's traits and features at ``at``: (status, body) of each answer."""
    api = f"http://127.0.0.1:{settings.web_port}/v1/profiles"
    out: dict[str, Any] = {}
    with httpx.Client(timeout=10) as client:
        for person in people:
            answers = (
                client.get(f"{api}/{person}/traits"),
                client.get(f"{api}/{person}/features?at={at}"),
            )
            out[person] = [(a.status_code, _body(a)) for a in answers]
    return out


def _body(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:  # an error page, shown as it is
        return answer.text


def test_a_worker_whose_disk_is_deleted_rebuilds_every_person_from_the_changelog(
    broker: str, tmp_path: Path
) -> None:
    """PEOPLE people, two events each, folded by one worker; it stops, its
    RocksDB is deleted, and it starts again. It applies no event again, its
    Profile API answers as before for a sample, and its RocksDB holds the
    same entries, byte for byte."""
    settings = settings_for_test(broker, NO_LLM, "none", tmp_path, partitions=4)
    start_ms = int(time.time() * 1000) - 2 * 3_600_000
    at = start_ms + PEOPLE + 60_000
    asyncio.run(create_topics(settings))
    events = asyncio.run(produce_backlog(settings, person_events(PEOPLE, start_ms)))
    worker = Worker(settings)
    worker.start()
    try:
        assert worker.wait_for("kairos_state_updates_total", events, seconds=300) == events
        sample = random.Random(9).sample([f"r{u}" for u in range(PEOPLE)], SAMPLE)
        before = sample_views(settings, sample, at)
        assert all(status == 200 for answers in before.values() for status, _ in answers)
        worker.stop()
        people, digest = stored_state(settings.data_dir / "worker")
        assert people == PEOPLE

        shutil.rmtree(settings.data_dir / "worker")
        worker.start(timeout=300)
        assert worker.counter("kairos_state_updates_total") == 0  # from the changelog alone
        # in bulk (streams/runtime/restore.py): at least one record per person
        assert worker.counter("kairos_changelog_restored_records_total") >= PEOPLE
        assert sample_views(settings, sample, at) == before
        worker.stop()
        assert stored_state(settings.data_dir / "worker") == (people, digest)
    finally:
        worker.stop()
