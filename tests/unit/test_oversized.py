"""No record stops the worker: one too large for a dead letter keeps its
head, one too large to travel between stages is dead-lettered, and an event
that makes the fold raise is dead-lettered whole and applied not at all."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import TopicPartition
from faust.exceptions import ProducerSendError
from prometheus_client import CollectorRegistry

import agents.fold
from agents.features import features
from agents.ingest import Router
from agents.profile import recent_events
from streams.codecs import DLQ_OFFSET, DLQ_REASON, DLQ_SIZE, DLQ_TOPIC, header_map
from streams.metrics import Metrics
from streams.reference import ReferenceData
from streams.runtime.deadletters import FALLBACK_HEAD, HEADROOM, DeadLetters, value_limit
from streams.runtime.topics import MAX_MESSAGE_BYTES
from streams.settings import Settings
from tests.support.harness import SOURCES, T0, Harness

MIB = 1024 * 1024


class Producer:
    """Records what it is asked to send; refuses as the client or the broker would."""

    def __init__(self, max_request_size: int, broker_max: int | None = None) -> None:
        self.max_request_size, self.broker_max = max_request_size, broker_max
        self.sent: list[tuple[bytes | None, bytes, dict[str, str]]] = []

    async def send(self, topic: str, key: Any, value: bytes, p: Any, ts: Any, headers: Any) -> Any:
        if len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers) > (
            self.max_request_size
        ):
            # As Faust's producer raises the client's error.
            raise ProducerSendError("Error while sending") from MessageSizeTooLargeError()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.broker_max is not None and len(value) > self.broker_max:
            future.set_exception(MessageSizeTooLargeError("broker: larger than max.message.bytes"))
        else:
            self.sent.append((key, value, header_map(headers)))
            future.set_result(len(self.sent) - 1)
        return future


def dead_letters(producer: Producer) -> DeadLetters:
    conf = SimpleNamespace(producer_max_request_size=producer.max_request_size)
    app = SimpleNamespace(conf=conf, producer=producer)
    return DeadLetters(
        app, SimpleNamespace(get_topic_name=lambda: "dlq"), Metrics(CollectorRegistry())
    )


def record(value: bytes, key: bytes | None = b"k", offset: int = 7) -> Any:
    return SimpleNamespace(topic="raw", partition=1, offset=offset, key=key, value=value)


async def dead_letter(dead: DeadLetters, rec: Any) -> None:
    await (await dead.send(rec, code="oversized", reason="payload is too big", stage="ingest"))


@pytest.mark.parametrize("size", [1 * MIB, 2 * MIB, 10 * MIB])
def test_a_record_larger_than_a_dead_letter_keeps_its_head_size_and_place(size: int) -> None:
    producer = Producer(1_000_000)
    dead = dead_letters(producer)
    value = bytes(range(256)) * (size // 256)
    asyncio.run(dead_letter(dead, record(value)))
    [(key, head, headers)] = producer.sent
    assert dead.limit == 1_000_000 - HEADROOM
    assert head == value[: dead.limit] and key == b"k"
    assert headers[DLQ_SIZE] == str(size)
    assert (headers[DLQ_TOPIC], headers[DLQ_OFFSET]) == ("raw", "7")
    assert headers[DLQ_REASON] == (
        f"payload is too big; the record is {size} bytes, more than a dead letter carries: "
        f"this one holds its first {dead.limit}"
    )


def test_a_record_that_fits_is_carried_whole_without_a_size() -> None:
    producer = Producer(1_000_000)
    asyncio.run(dead_letter(dead_letters(producer), record(b"x" * 500_000)))
    [(_key, value, headers)] = producer.sent
    assert value == b"x" * 500_000 and DLQ_SIZE not in headers


def test_the_limit_is_the_smaller_of_the_producers_and_the_topics() -> None:
    assert value_limit(1_000_000) == 1_000_000 - HEADROOM
    assert value_limit(5 * MIB) == MAX_MESSAGE_BYTES - HEADROOM
    assert value_limit(5 * MIB, 300_000) == 300_000 - HEADROOM


def test_a_dead_letter_the_broker_refuses_is_sent_again_with_a_small_head() -> None:
    producer = Producer(1_000_000, broker_max=100_000)  # a dead-letter topic made elsewhere
    asyncio.run(dead_letter(dead_letters(producer), record(b"y" * 2 * MIB)))
    [(_key, value, headers)] = producer.sent
    assert value == b"y" * FALLBACK_HEAD and headers[DLQ_SIZE] == str(2 * MIB)


def test_a_dead_letter_the_client_refuses_is_sent_again_with_a_small_head() -> None:
    producer = Producer(1_000_000)
    dead = dead_letters(producer)
    producer.max_request_size = 500_000  # smaller than the limit was sized from
    asyncio.run(dead_letter(dead, record(b"w" * 2 * MIB)))
    [(_key, value, headers)] = producer.sent
    assert value == b"w" * FALLBACK_HEAD and headers[DLQ_SIZE] == str(2 * MIB)


def test_a_huge_key_or_reason_does_not_make_the_dead_letter_too_large() -> None:
    producer = Producer(1_000_000)
    dead = dead_letters(producer)
    rec = record(b"z" * 2 * MIB, key=b"k" * 600_000)

    async def send() -> None:
        await (await dead.send(rec, code="internal_error", reason="r" * MIB, stage="ingest"))

    asyncio.run(send())
    [(key, value, headers)] = producer.sent
    assert key is None and len(value) == dead.limit
    assert headers[DLQ_REASON].startswith("r" * 2000 + "; the record is")


def test_an_event_too_large_once_normalized_is_dead_lettered_not_bundled() -> None:
    router = Router(SOURCES, 2, event_limit=2000)
    harness = Harness(2)
    small = harness.record("clickstream", {"type": "page", "userId": "u", "name": "/"})
    # 1e15 is respelled 1000000000000000.0 once parsed: the event grows.
    numbers = b"[" + b",".join([b"1e15"] * 300) + b"]"
    big = harness.record("clickstream", b'{"type": "page", "userId": "u", "properties": '
                         b'{"n": ' + numbers + b"}}")  # fmt: skip
    assert len(big.value) < 2000
    routed = router.route({TopicPartition("clickstream", 0): [small, big]})
    [(dead, code, reason)] = routed.dead
    assert dead is big and code == "too_large"
    assert reason.startswith("normalized, the event is ") and reason.endswith(
        "carries at most 2000"
    )
    assert sum(routed.counts.values()) == 1


def view(n: int, name: str = "Product Viewed") -> tuple[str, dict[str, Any]]:
    props = {"product_id": "p-101", "category": "running"}
    return "clickstream", {"type": "track", "event": name, "userId": "ana", "messageId": f"v{n}",
                           "timestamp": T0 + n * 1000, "properties": props}  # fmt: skip


def events_15m(profile: Any) -> int:
    reference = ReferenceData(Settings().reference_dir).current
    return int(features(profile, T0 + 5000, reference)["windows"]["15m"]["events"])


def test_an_event_the_fold_raises_on_is_dead_lettered_and_applied_not_at_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failure strikes after the event's tiles were counted: the profile
    must not keep them, nor remember the event's id."""
    real = agents.fold.apply_event

    def apply_event(profile: Any, event: Any) -> None:
        if event.get("name") == "Boom":
            raise KeyError("boom")
        real(profile, event)

    monkeypatch.setattr(agents.fold, "apply_event", apply_event)
    harness = Harness(2)
    harness.send(view(1), view(2, "Boom"), view(3))  # one bundle
    harness.send(view(4))  # a later one
    [(event, code, reason)] = harness.dead
    assert (event["id"], code) == ("v2", "internal_error")
    assert reason == "state update failed: KeyError('boom')"
    profile = harness.profile("ana")
    assert events_15m(profile) == 3  # v1, v3, v4; not v2
    assert [e["timestamp"] for e in recent_events(profile)] == [T0 + 4000, T0 + 3000, T0 + 1000]
    harness.send(view(2))  # the same id, once the bug is gone, is new to the profile
    assert events_15m(harness.profile("ana")) == 4


def added(n: int, quantity: int, user: str = "ana") -> tuple[str, dict[str, Any]]:
    props = {"product_id": "p-101", "quantity": quantity}
    return "clickstream", {"type": "track", "event": "Product Added", "userId": user,
                           "messageId": f"a{n}", "timestamp": T0 + n * 1000,
                           "properties": props}  # fmt: skip


U64_MAX = 2**64 - 1


def test_an_event_that_leaves_its_profile_unencodable_is_dead_lettered_and_the_rest_applied() -> (
    None
):
    """A real edge case: a cart quantity at the 64-bit limit is valid, and one
    more makes the profile an integer orjson cannot write. The fold raises
    only when the bundle's writes are encoded, after every event."""
    harness = Harness(2)
    harness.send(added(1, U64_MAX), added(2, 1), view(3), added(4, 2, user="ben"))
    harness.send(view(5))  # a later bundle for the same person
    [(event, code, reason)] = harness.dead
    assert (event["id"], code) == ("a2", "internal_error")
    assert reason == "state update failed: TypeError('Integer exceeds 64-bit range')"
    assert harness.profile("ana")["cart"]["p-101"][0] == U64_MAX
    assert events_15m(harness.profile("ana")) == 3  # a1, v3, v5; a2 not at all
    assert harness.profile("ben")["cart"]["p-101"][0] == 2
