"""Another Kafka client (librdkafka, via confluent-kafka) produces; kairos processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from streams.codecs import header_map, loads
from streams.reference import load_reference
from tests.e2e.scenario import minutes_ago
from tests.support.stack import Worker, consume, settings_for_test

pytestmark = pytest.mark.broker
FLATIRON = load_reference().stores["s-flatiron"]
GARBAGE = b"\x00\x01 definitely not an event"


def test_librdkafka_producer_to_offer_through_the_llm_fallback(broker: str, tmp_path: Path) -> None:
    # Nothing listens on port 9: the LLM is down, so the offer must fall back.
    settings = settings_for_test(broker, "http://127.0.0.1:9/v1", "down", tmp_path)
    worker = Worker(settings)
    worker.start()
    try:
        producer = Producer({"bootstrap.servers": broker, "linger.ms": 5})
        t = settings.topics
        events = [
            (t.clickstream, {"type": "identify", "userId": "rd1", "traits": {"name": "Rosa"},
                             "timestamp": minutes_ago(60)}),
            (t.clickstream, {"type": "track", "event": "Product Viewed", "anonymousId": "rd1",
                             "properties": {"product_id": "p-203", "category": "outdoor"},
                             "timestamp": minutes_ago(30)}),
            (t.location, {"userId": "rd1", "lat": FLATIRON.lat, "lon": FLATIRON.lon,
                          "messageId": "rd-ping", "timestamp": minutes_ago(1)}),
        ]  # fmt: skip
        # The identify lands first: across topics, arrival order is not event
        # order, and the offer must carry the name.
        producer.produce(events[0][0], orjson.dumps(events[0][1]))  # no key: none needed
        assert producer.flush(30) == 0
        assert worker.wait_for("kairos_state_updates_total", 1) == 1
        for topic, event in events[1:]:
            producer.produce(topic, orjson.dumps(event))
        producer.produce(t.location, GARBAGE, key=b"rd1")
        assert producer.flush(30) == 0

        offers = asyncio.run(consume(settings, t.offers, lambda r: len(r) >= 1, seconds=60))
        dead = asyncio.run(consume(settings, t.dlq, lambda r: len(r) >= 1, seconds=30))
    finally:
        worker.stop()

    [record] = offers
    offer = loads(record.value)
    assert offer["user"] == "rd1"
    assert offer["source"] == "fallback"
    assert offer["fallback_reason"] == "unavailable"
    assert offer["message"].startswith("Welcome in, Rosa! The Daypack 22L")
    [letter] = dead
    assert letter.value == GARBAGE
    assert header_map(letter.headers)["kairos.dlq.topic"] == t.location
