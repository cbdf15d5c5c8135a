"""`kairos dataset export` and `kairos eval` on the topics a live worker wrote:
store visits, their offers and feedback, then everyone renamed. The export
has each moment once with its outcomes; eval, from the topics or from the
export, judges each moment on its snapshot and ranks the worse variants
worse."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.features import features
from agents.moments import moment_id, offer_id
from streams.reference import load_reference
from streams.settings import Settings
from tests.support.eval_llm import answer, renamed, variant_files, visits
from tests.support.fake_llm import FakeLLM, prompt_text
from tests.support.stack import Worker, consume, produce, run_cli, settings_for_test

pytestmark = pytest.mark.broker

USERS = ["ann", "bea", "cal", "dev", "eli", "fay"]
REFERENCE = load_reference()


@dataclass
class Run:
    settings: Settings
    llm: FakeLLM
    folder: Path
    export: list[dict[str, Any]]


def feedback(user: str, action: str, at: int) -> tuple[str, dict[str, Any]]:
    offer = offer_id(moment_id("store_entry", user, "s-flatiron", f"ping-{user}"))
    return ("feedback", {"type": "feedback", "userId": user, "offer_id": offer, "action": action,
                         "messageId": f"{action}-{user}", "timestamp": at})  # fmt: skip


@pytest.fixture(scope="module")
def run(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("eval")
    with FakeLLM(answer) as llm:
        settings = settings_for_test(broker, llm.url, llm.model, folder)
        worker = Worker(settings)
        worker.start()
        try:
            at = int(time.time() * 1000) - 5 * 60_000  # recent: the visits are not stale
            asyncio.run(produce(settings, visits(USERS, at)))
            asyncio.run(consume(settings, settings.topics.offers,
                                lambda r: len(r) >= len(USERS), 60))  # fmt: skip
            later = [feedback(u, "delivered", at + 60_000) for u in USERS]
            later += [feedback(u, "opened", at + 120_000) for u in USERS[:2]]
            later += renamed(USERS, at + 180_000)
            asyncio.run(produce(settings, later))
            asyncio.run(consume(settings, settings.topics.outcomes,
                                lambda r: len(r) >= len(USERS) + 2, 60))  # fmt: skip
        finally:
            worker.stop()
        out = folder / "moments.jsonl"
        exported = run_cli(settings, "dataset", "export", "--out", str(out))
        assert exported.returncode == 0, exported.stderr
        assert f"{len(USERS)} moments ({len(USERS)} with outcomes)" in exported.stderr
        lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        llm.requests.clear()  # from here on, only eval's
        yield Run(settings, llm, folder, lines)


def test_the_export_has_each_moment_once_with_its_features_and_outcomes(run: Run) -> None:
    assert sorted(line["user"] for line in run.export) == USERS
    for line in run.export:
        assert line["group"] == "offer" and line["type"] == "store_entry"
        want = {"delivered"} | ({"opened"} if line["user"] in USERS[:2] else set())
        assert set(line["outcomes"]) == want
        # The features are the snapshot's, at the moment's event time.
        assert line["features"] == features(line["profile"], line["event_ts"], REFERENCE)
        assert line["features"]["windows"]["15m"]["events"] >= 2
        # The snapshot is the profile at the moment: the rename came later.
        assert line["profile"]["traits"]["name"][0] == line["user"].capitalize()


def _eval(run: Run, *args: str) -> list[dict[str, Any]]:
    prices, other = variant_files(run.folder)
    result = run_cli(run.settings, "eval", "--endpoint", run.llm.url, "--model", run.llm.model,
                     "--variant-file", str(prices), "--variant-file", str(other), "--json",
                     *args, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"judging {len(USERS)} moments" in result.stderr
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def test_eval_from_the_topics_ranks_the_worse_variants_worse(run: Run) -> None:
    rows = _eval(run, "--concurrency", "2")
    assert [row["variant"] for row in rows][2:] == ["no-name", "prices"]
    assert {row["variant"] for row in rows[:2]} == {"a", "b"}
    by = {row["variant"]: row for row in rows}
    assert by["a"]["score"] == by["b"]["score"] == 1.0
    assert by["no-name"]["right_customer"] == 0.0
    assert by["prices"]["fallbacks"] == {"offer_terms": len(USERS)}
    prompts = [prompt_text(request) for request in run.llm.requests]
    assert len(prompts) == 4 * len(USERS)
    assert not any("Renamed" in p for p in prompts)  # each moment's snapshot, not today's


def test_eval_of_the_export_agrees_with_eval_of_the_topics(run: Run) -> None:
    from_topics = _eval(run)
    from_file = _eval(run, "--from-file", str(run.folder / "moments.jsonl"))
    keep = ("rank", "variant", "moments", "passed", "fallbacks", "score", "right_customer",
            "store_related", "message_chars")  # fmt: skip
    assert [{k: r[k] for k in keep} for r in from_file] == [
        {k: r[k] for k in keep} for r in from_topics
    ]


def test_eval_prints_a_table_by_default(run: Run) -> None:
    result = run_cli(run.settings, "eval", "--endpoint", run.llm.url, "--model", run.llm.model,
                     "--variant", "a", timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    head, _rule, row = result.stdout.splitlines()
    assert head.split()[:3] == ["rank", "variant", "model"]
    assert row.split()[:5] == ["1", "a", run.llm.model, str(len(USERS)), "100.0%"]


@pytest.mark.parametrize(
    ("args", "code", "named"),
    [
        (["--variant", "nope"], 1, "--variant 'nope': no such variant"),
        (["--concurrency", "0"], 2, "--concurrency"),
        (["--endpoint", "vllm:8000"], 2, "--endpoint"),
        (["--timeout", "0"], 2, "--timeout: expected seconds above 0"),
        (["--timeout", "soon"], 2, "--timeout: expected seconds above 0"),
        (["--type", "teleport"], 1, "--type 'teleport'"),
        (["--variant-file", "/nonexistent.yaml"], 1, "/nonexistent.yaml"),
    ],
)
def test_a_bad_option_stops_eval_with_it_named(
    run: Run, args: list[str], code: int, named: str
) -> None:
    result = run_cli(run.settings, "eval", *args)
    assert result.returncode == code and named in result.stderr, result.stderr
    assert result.stdout == ""
