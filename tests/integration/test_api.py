"""Two workers split the partitions; the Profile API answers for every user on both.

Each worker holds some of the profiles table's partitions. A request to
either worker for any user gets that user's profile: served where it lives,
forwarded where it does not. An id merged into another redirects to it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from streams.settings import Settings
from streams.tools.process import free_port
from tests.support.stack import Worker, labelled, produce, settings_for_test

pytestmark = pytest.mark.broker
NO_LLM = "http://127.0.0.1:9/v1"
T0 = 1_795_000_000_000
TOKEN = "s3cret-token"
USERS = 24


def traffic() -> tuple[list[tuple[str, dict[str, Any]]], int]:
    items: list[tuple[str, dict[str, Any]]] = []
    for n in range(USERS):
        items.append(("clickstream", {
            "type": "identify", "userId": f"u{n}", "traits": {"first_name": f"N{n}"},
            "timestamp": T0 + n, "messageId": f"id-{n}",
        }))  # fmt: skip
        items.append(("clickstream", {
            "type": "track", "event": "Product Viewed", "userId": f"u{n}",
            "properties": {"product_id": f"p-{n}", "category": "running"},
            "timestamp": T0 + 1000 + n, "messageId": f"view-{n}",
        }))  # fmt: skip
    for n in range(2):  # an anonymous visitor who turns out to be u0
        items.append(("clickstream", {
            "type": "track", "event": "Product Viewed", "anonymousId": "anon-1",
            "properties": {"product_id": f"p-anon-{n}", "category": "trail"},
            "timestamp": T0 + 2000 + n, "messageId": f"anon-{n}",
        }))  # fmt: skip
    items.append(("clickstream", {
        "type": "identify", "anonymousId": "anon-1", "userId": "u0",
        "timestamp": T0 + 3000, "messageId": "login",
    }))  # fmt: skip
    items.append(("clickstream", {  # a product of the catalog: a recommendation
        "type": "track", "event": "Product Viewed", "userId": "u1",
        "properties": {"product_id": "p-101", "category": "running"},
        "timestamp": T0 + 4000, "messageId": "view-catalog",
    }))  # fmt: skip
    return items, 2 * USERS + 4


def ready(settings: Settings) -> bool:
    try:
        url = f"http://127.0.0.1:{settings.web_port}/ready"
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def get(settings: Settings, path: str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{settings.web_port}/v1/profiles/{path}"
    return httpx.get(url, headers=headers, timeout=10)


def test_two_workers_answer_for_every_user(broker: str, tmp_path: Path) -> None:
    first = settings_for_test(broker, NO_LLM, "none", tmp_path / "a", partitions=4)
    first = first.model_copy(update={"api_token": SecretStr(TOKEN)})
    second = first.model_copy(update={"web_port": free_port(), "data_dir": tmp_path / "b"})
    workers = [Worker(first), Worker(second)]
    items, applied = traffic()
    try:
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 90
        while not (ready(first) and ready(second)) and time.monotonic() < deadline:
            time.sleep(0.2)  # the first worker rebalances when the second joins
        assert ready(first) and ready(second)
        asyncio.run(produce(first, items))
        deadline = time.monotonic() + 90
        while sum(w.counter("kairos_state_updates_total") for w in workers) < applied:
            assert time.monotonic() < deadline, "the workers did not apply every event"
            time.sleep(0.2)
        # Both workers hold state: the partitions are split.
        assert all(w.counter("kairos_state_updates_total") > 0 for w in workers)
        # Each folded the bundles its own ingest made for its partitions as it
        # made them, and the other's on reading them: none twice.
        deadline = time.monotonic() + 30
        while not all(folded_both_ways(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(folded_both_ways(w) for w in workers)
        assert sum(w.counter("kairos_duplicates_total") for w in workers) == 0

        for settings in (first, second):
            for n in range(USERS):
                answer = get(settings, f"u{n}/traits")
                assert answer.status_code == 200, answer.text
                assert answer.json()["id"] == f"u{n}"
                assert answer.json()["traits"]["first_name"] == f"N{n}"
                assert answer.json()["updated_at"]["first_name"] == T0 + n

            identities = get(settings, "u0/identities").json()
            assert identities == {"id": "u0", "identities": ["u0", "anon-1"]}
            events = get(settings, "u0/events").json()["events"]
            assert [e.get("product_id") for e in events if e["type"] == "track"] == [
                "p-anon-1", "p-anon-0", "p-0",
            ]  # fmt: skip
            features = get(settings, f"u0/features?at={T0 + 3000}").json()["features"]
            assert features["windows"]["15m"] == {"events": 3, "products": 3, "categories": 2}
            # Each family as of its latest event; anon-1's views came with the merge.
            as_of = get(settings, "u0/features").json()["as_of"]
            assert as_of == {"traits": T0 + 3000, "session": T0 + 2001, "windows": T0 + 2001,
                             "location": None, "taste": None}  # fmt: skip
            offers = get(settings, "u0/offers").json()
            assert offers["offers"] == [] and offers["consent"] == {"opted_out": False}

            # u1 viewed a catalog product, whose vector the worker embedded at start.
            picks = get(settings, "u1/recommendations?k=3").json()
            assert picks["k"] == 3 and picks["taste_as_of"] == T0 + 4000
            first, *others = picks["recommendations"]
            assert (first["product_id"], first["reason"]) == ("p-101", "viewed")
            assert first["score"] > 0.99  # the taste is that one product
            assert len(others) == 2
            assert all(o["reason"] == "similar" and o["like"] == "p-101" for o in others)
            # u0 viewed products the catalog does not have: no taste, nothing to show.
            none = get(settings, "u0/recommendations").json()
            assert none["recommendations"] == [] and none["taste_as_of"] is None
            for k in ("0", "21", "x"):
                assert get(settings, f"u1/recommendations?k={k}").status_code == 400
            assert get(settings, "u1/recommendations", token=None).status_code == 401
            assert get(settings, "anon-1/recommendations?k=2").headers["Location"] == (
                "/v1/profiles/u0/recommendations?k=2"
            )

            moved = get(settings, "anon-1/traits")
            assert moved.status_code == 307
            assert moved.headers["Location"] == "/v1/profiles/u0/traits"
            assert get(settings, "nobody/traits").status_code == 404
            assert get(settings, "u0/nothing").status_code == 404
            assert get(settings, "u0/traits", token=None).status_code == 401
            assert get(settings, "u0/traits", token="wrong").status_code == 401

        # Each worker served some users itself and forwarded the others.
        for worker in workers:
            served = _api(worker, "traits", "ok")
            forwarded = _api(worker, "traits", "forwarded")
            assert served > 0 and forwarded > 0, (served, forwarded)
    finally:
        for worker in workers:
            worker.stop()


def folded_both_ways(worker: Worker) -> bool:
    paths = labelled(worker.metrics(), "kairos_context_bundles_total", "path")
    return paths.get("in_process", 0) > 0 and paths.get("topic", 0) > 0


def _api(worker: Worker, view: str, outcome: str) -> float:
    line = f'kairos_api_requests_total{{outcome="{outcome}",view="{view}"}}'
    for text in worker.metrics().splitlines():
        if text.startswith(line):
            return float(text.rsplit(" ", 1)[1])
    return 0.0
