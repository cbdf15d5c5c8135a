"""`kairos eval` on moments from the real fold, against a stand-in model whose
answers follow the prompt: variants known to be worse rank worse, for the
reasons the guardrails give, and each moment's context is its snapshot's."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.rules import load_rules
from streams.errors import CommandError
from streams.reference import DEMO_DIR, ReferenceData
from streams.settings import Settings
from streams.tools import evaluate
from streams.tools.dataset import rows, write
from streams.tools.scores import Row
from streams.tools.variants import choose
from tests.support.eval_llm import answer, renamed, variant_files, visits
from tests.support.fake_llm import Answer, FakeLLM, prompt_text
from tests.support.harness import T0, Harness

USERS = ["ann", "bea", "cal", "dev", "eli", "fay", "gus", "hal"]
SETTINGS = Settings(llm_retries=0)
RULES = load_rules(SETTINGS.rules_file)


@pytest.fixture(scope="module")
def moments() -> list[dict[str, Any]]:
    harness = Harness()
    harness.send(*visits(USERS, T0))
    harness.send(*renamed(USERS, T0 + 60_000))  # after the moments: not theirs to see
    assert len(harness.moments) == len(USERS)
    return harness.moments


def run(moments: list[dict[str, Any]], url: str, model: str, variants: list[Any],
        concurrency: int = 3) -> list[Row]:  # fmt: skip
    reference = ReferenceData(SETTINGS.reference_dir)
    chosen, skipped = evaluate.cases(moments, reference, RULES, SETTINGS)
    assert len(chosen) == len(moments) and not skipped
    options = evaluate.Options(url, [model], variants, concurrency)
    return asyncio.run(evaluate.run(SETTINGS, RULES, reference, chosen, options))


def test_variants_known_to_be_worse_rank_worse(
    moments: list[dict[str, Any]], tmp_path: Path
) -> None:
    with FakeLLM(answer) as llm:
        result = run(moments, llm.url, llm.model, choose([], list(variant_files(tmp_path))))
    by = {row.variant: row for row in result}
    assert [row.variant for row in result][2:] == ["no-name", "prices"]
    assert {row.variant for row in result[:2]} == {"a", "b"}
    assert by["a"].rank == by["b"].rank == 1
    assert by["a"].pass_rate == by["a"].score == by["a"].right_customer == 1.0
    assert by["a"].store_related == 1.0 and by["a"].fallbacks == {}
    # Greets nobody by name: the guardrails let it through, eval does not.
    assert by["no-name"].pass_rate == 1.0 and by["no-name"].right_customer == 0.0
    assert (by["no-name"].rank, by["no-name"].score) == (3, 0.0)
    # Quotes prices: every answer rejected, each falls back to the template.
    assert by["prices"].fallbacks == {"offer_terms": len(USERS)}
    assert (by["prices"].rank, by["prices"].pass_rate) == (4, 0.0)
    assert all(row.moments == len(USERS) and row.model == "fake-llm" for row in result)
    assert all(row.prompt_tokens == 50 and row.completion_tokens == 20 for row in result)


def test_each_moment_is_judged_on_its_snapshot_not_on_the_profile_now(
    moments: list[dict[str, Any]],
) -> None:
    with FakeLLM(answer) as llm:
        [row] = run(moments, llm.url, llm.model, choose(["a"], []))
        prompts = [prompt_text(request) for request in llm.requests]
    assert len(prompts) == len(USERS) and row.right_customer == 1.0
    for user in USERS:
        assert sum(f'"first_name":"{user.capitalize()}"' in p for p in prompts) == 1
    assert not any("Renamed" in p for p in prompts)


def test_the_client_s_failures_are_fallback_reasons(moments: list[dict[str, Any]]) -> None:
    def script(request: dict[str, Any]) -> Answer:
        return Answer(status=500) if '"Ann"' in prompt_text(request) else answer(request)

    with FakeLLM(script) as llm:
        [row] = run(moments, llm.url, llm.model, choose(["a"], []))
    assert row.fallbacks == {"unavailable": 1}
    assert row.passed == len(USERS) - 1


def test_no_more_than_concurrency_requests_are_open(moments: list[dict[str, Any]]) -> None:
    def held(request: dict[str, Any]) -> Answer:
        return Answer(content=answer(request).content, hold=True)

    with FakeLLM(held) as llm:
        done: list[list[Row]] = []
        thread = threading.Thread(
            target=lambda: done.append(run(moments, llm.url, llm.model, choose(["a"], []), 3))
        )
        thread.start()
        deadline = time.monotonic() + 30
        while len(llm.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # room for a fourth request, were one to be sent
        open_while_held = len(llm.requests)
        llm.release()
        thread.join(60)
    assert open_while_held == 3
    assert done and done[0][0].passed == len(USERS)


def test_an_exported_file_is_judged_as_the_topic_would_be(
    moments: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "moments.jsonl"
    write(rows(moments, []), path, stdout=None)  # type: ignore[arg-type]
    from_file = evaluate.read_lines(path)
    oldest_first = sorted(moments, key=lambda m: (m["event_ts"], m["id"]))
    assert [m["id"] for m in from_file] == [m["id"] for m in oldest_first]
    assert all(m["profile"] == o["profile"] for m, o in zip(from_file, oldest_first, strict=True))
    with FakeLLM(answer) as llm:
        [from_topic] = run(moments, llm.url, llm.model, choose(["b"], []))
        [from_export] = run(from_file, llm.url, llm.model, choose(["b"], []))
    same = ("moments", "passed", "fallbacks", "store_related", "right_customer", "score")
    assert all(getattr(from_topic, f) == getattr(from_export, f) for f in same)


def test_moments_that_cannot_be_judged_are_left_out_and_counted(
    moments: list[dict[str, Any]],
) -> None:
    reference = ReferenceData(SETTINGS.reference_dir)
    gone = {**moments[0], "id": "m-gone", "store_id": "s-closed"}
    bare = {k: v for k, v in moments[1].items() if k != "profile"} | {"id": "m-bare"}
    odd = {**moments[2], "id": "m-odd", "type": "teleported"}
    chosen, skipped = evaluate.cases([*moments, gone, bare, odd, moments[0]], reference, RULES,
                                     SETTINGS)  # fmt: skip
    assert len(chosen) == len(USERS)  # each once, the duplicate too
    assert skipped == {"store not in the reference data": 1, "no profile snapshot": 1,
                       "unknown moment type": 1}  # fmt: skip
    latest, _ = evaluate.cases(moments, reference, RULES, SETTINGS, limit=2)
    assert [c.moment["id"] for c in latest] == [c.moment["id"] for c in chosen[-2:]]


def test_a_file_line_that_is_not_a_moment_stops_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(orjson.dumps({"id": "m-1"}) + b"\n\n{oops\n")
    with pytest.raises(CommandError, match=r"bad.jsonl, line 3: not valid JSON"):
        evaluate.read_lines(path)
    path.write_bytes(b"[1, 2]\n")
    with pytest.raises(CommandError, match="line 1: expected a moment"):
        evaluate.read_lines(path)
    with pytest.raises(CommandError, match=r"missing\.jsonl"):
        evaluate.read_lines(tmp_path / "missing.jsonl")


def test_a_timeout_per_request_falls_back_as_the_worker_would(
    moments: list[dict[str, Any]],
) -> None:
    def slow(request: dict[str, Any]) -> Answer:
        late = '"Ann"' in prompt_text(request)
        return Answer(content=answer(request).content, delay_s=3.0 if late else 0.0)

    reference = ReferenceData(SETTINGS.reference_dir)
    chosen, _ = evaluate.cases(moments, reference, RULES, SETTINGS)
    with FakeLLM(slow) as llm:
        options = evaluate.Options(llm.url, [llm.model], choose(["a"], []), 3, timeout_s=0.5)
        [row] = asyncio.run(evaluate.run(SETTINGS, RULES, reference, chosen, options))
    assert row.fallbacks == {"timeout": 1} and row.passed == len(USERS) - 1


@pytest.mark.parametrize("text", ["0", "-1", "soon", "nan", "3601"])
def test_a_bad_timeout_is_an_option_error(text: str) -> None:
    import argparse

    from streams.tools.eval_cli import _seconds

    with pytest.raises(argparse.ArgumentTypeError, match="expected seconds above 0"):
        _seconds(text)
    assert _seconds("2.5") == 2.5


def test_an_empty_recorded_slice_is_kept_and_only_a_missing_one_is_today_s(
    moments: list[dict[str, Any]],
) -> None:
    today = ReferenceData(SETTINGS.reference_dir)
    empty = {**moments[0], "reference": {"stores": [], "products": []}}
    recorded = evaluate.as_recorded(empty, today.current)
    assert (recorded.stores, recorded.products) == ({}, {})
    chosen, skipped = evaluate.cases([empty], today, RULES, SETTINGS)
    assert not chosen and skipped == {"store not in the reference data": 1}
    for held in ({}, None, "stores"):  # a dict without rows is a slice too, and empty
        record = {k: v for k, v in moments[0].items() if k != "reference"}
        if held is not None:
            record["reference"] = held
        kept = evaluate.as_recorded(record, today.current)
        assert (kept is today.current) == (not isinstance(held, dict))


def test_a_moment_records_the_store_and_products_its_context_drew_on(
    moments: list[dict[str, Any]],
) -> None:
    for moment in moments:
        held = moment["reference"]
        assert [s["id"] for s in held["stores"]] == [moment["store_id"]]
        assert {p["id"] for p in held["products"]} <= {"p-101", "p-102"}
        assert held["products"] and len(held["products"]) <= 3


def test_eval_judges_with_the_reference_data_the_moment_recorded(
    moments: list[dict[str, Any]], tmp_path: Path
) -> None:
    # Since the moments: Flatiron closed, and the catalog renamed the products.
    folder = tmp_path / "reference"
    folder.mkdir()
    stores = [s for s in orjson.loads((DEMO_DIR / "stores.json").read_bytes())
              if s["id"] != "s-flatiron"]  # fmt: skip
    catalog = [{**p, "name": f"Renamed {p['id']}"}
               for p in orjson.loads((DEMO_DIR / "catalog.json").read_bytes())]  # fmt: skip
    (folder / "stores.json").write_bytes(orjson.dumps(stores))
    (folder / "catalog.json").write_bytes(orjson.dumps(catalog))
    today = ReferenceData(folder)
    chosen, skipped = evaluate.cases(moments, today, RULES, SETTINGS)
    assert len(chosen) == len(USERS) and not skipped
    with FakeLLM(answer) as llm:
        options = evaluate.Options(llm.url, [llm.model], choose(["a"], []), 3)
        [row] = asyncio.run(evaluate.run(SETTINGS, RULES, today, chosen, options))
        prompts = [prompt_text(request) for request in llm.requests]
    assert row.passed == len(USERS) and row.store_related == 1.0
    assert all("Flatiron" in p and "Renamed" not in p for p in prompts)
    # A moment recorded before moments carried their reference data: today's.
    old = [{k: v for k, v in m.items() if k != "reference"} for m in moments]
    chosen, skipped = evaluate.cases(old, today, RULES, SETTINGS)
    assert not chosen and skipped == {"store not in the reference data": len(USERS)}
