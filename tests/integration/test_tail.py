"""`kairos tail`: a downstream consumer that drops replayed offers by offer id."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.runtime.admin import create_topics
from tests.support.stack import run_cli, settings_for_test

pytestmark = pytest.mark.broker


def offer(offer_id: str, user: str) -> dict[str, Any]:
    return {
        "offer_id": offer_id, "user": user, "headline": "Hi", "message": "Come in.",
        "store": {"id": "s-soho", "name": "SoHo"}, "source": "fallback",
        "fallback_reason": "timeout", "coupon": {"code": "K-1", "discount_pct": 10},
        "timings": {"emitted_at": 1_795_000_000_000},
    }  # fmt: skip


async def send(settings: Any, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(settings.topics.offers, value, key=b"k", partition=0)
    finally:
        await producer.stop()


def test_tail_prints_each_offer_once(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, "http://127.0.0.1:9/v1", "none", tmp_path)
    asyncio.run(create_topics(settings))
    first, second = orjson.dumps(offer("o-1", "ada")), orjson.dumps(offer("o-2", "bo"))
    asyncio.run(send(settings, [first, first, b"garbage", second]))  # o-1 replayed
    result = run_cli(settings, "tail", "--from-beginning", "--idle", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("o-1 ada @ SoHo: Hi | Come in. [K-1, 10% off] fallback (timeout)")
    assert lines[1] == "(unreadable record at offset 2 skipped)"
    assert " o-2 bo @ SoHo" in lines[2] and len(lines) == 3
    assert "2 offers, 1 duplicates dropped" in result.stderr

    as_json = run_cli(settings, "tail", "--from-beginning", "--count", "1", "--json")
    assert orjson.loads(as_json.stdout) == offer("o-1", "ada")
