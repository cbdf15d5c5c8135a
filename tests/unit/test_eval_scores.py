"""`kairos eval`'s numbers and table, from judged moments written by hand; the
variant files it reads, and the lines `kairos dataset export` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.context import ContextSlice
from streams.errors import CommandError
from streams.reference import load_reference
from streams.tools.dataset import rows
from streams.tools.scores import Judged, percentile, ranked, score, table
from streams.tools.variants import choose, load_variant_file

REFERENCE = load_reference()
FLATIRON = REFERENCE.stores["s-flatiron"]  # carries running, outdoor, apparel
SHOES = REFERENCE.products["p-101"]  # running
AT_FLATIRON = ContextSlice(FLATIRON, "Ann", None, None, (SHOES,))
NO_NAME = ContextSlice(FLATIRON, None, None, None, (SHOES,))
CART = ContextSlice(None, "Ann", None, None, (SHOES,), moment_type="cart_abandoned")
NOT_AT_FLATIRON = next(
    p for p in REFERENCE.products.values() if p.category not in FLATIRON.categories
)


def answer(context: ContextSlice, message: str, product: str | None, latency_s: float) -> Judged:
    return Judged(context, True, None, "Hello", message, product, 40, 12, latency_s)


def fell_back(context: ContextSlice, reason: str, latency_s: float | None) -> Judged:
    tokens = None if latency_s is None else 40
    return Judged(context, False, reason, "Tmpl", "Template text", None, tokens, tokens, latency_s)


JUDGED = [
    answer(AT_FLATIRON, "Hi Ann, try the shoes.", "p-101", 0.1),  # good on every count
    answer(AT_FLATIRON, "Hi Bo, try the shoes.", "p-101", 0.2),  # the wrong customer
    answer(AT_FLATIRON, "Hi Ann, try these.", NOT_AT_FLATIRON.id, 0.3),  # not this store's
    answer(NO_NAME, "Hello there, try it.", "p-101", 0.4),  # no name known: not judged on it
    answer(CART, "Ann, your cart awaits", "p-101", 0.5),  # no store: not judged on it
    fell_back(AT_FLATIRON, "offer_terms", 0.6),
    fell_back(AT_FLATIRON, "offer_terms", 0.7),
    fell_back(AT_FLATIRON, "timeout", None),  # never answered: no tokens, no latency
]


def test_a_variant_row_counts_what_its_answers_did() -> None:
    row = score("a", "m", JUDGED, REFERENCE, wall_s=2.0)
    assert (row.moments, row.passed, row.pass_rate) == (8, 5, 0.625)
    assert row.fallbacks == {"offer_terms": 2, "timeout": 1}
    # Of the 4 answers about a store with a product, 3 name one Flatiron carries.
    assert row.store_related == 0.75
    # Of the 4 answers for a customer with a known name, 3 call them by it.
    assert row.right_customer == 0.75
    # Good on every count that applies: the first, the nameless and the cart's.
    assert row.score == round(3 / 8, 4)
    passed = [j.message for j in JUDGED if j.passed]
    assert row.message_chars == round(sum(map(len, passed)) / 5, 1)
    # Means over the 7 answered requests: 5 answers of 12 tokens, 2 rejected of 40.
    assert (row.prompt_tokens, row.completion_tokens) == (40.0, 20.0)
    assert row.latency_p50_ms == 400.0 and row.latency_p99_ms == 700.0
    assert row.generations_per_s == 3.5  # 7 answers in 2 s


def test_nothing_answered_gives_no_figures_rather_than_zeros() -> None:
    row = score("a", "m", [fell_back(AT_FLATIRON, "unavailable", None)], REFERENCE, 1.0)
    assert row.pass_rate == 0.0 and row.score == 0.0
    assert row.latency_p50_ms is None and row.prompt_tokens is None
    assert row.store_related is None and row.right_customer is None
    assert row.generations_per_s is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_rows_are_ranked_by_score_then_pass_rate_and_ties_share_a_rank() -> None:
    good = score("good", "m", JUDGED[:1], REFERENCE, 1.0)
    same = score("same", "m", JUDGED[:1], REFERENCE, 1.0)
    named_wrong = score("named-wrong", "m", JUDGED[1:2], REFERENCE, 1.0)  # passed, score 0
    rejected = score("rejected", "m", JUDGED[5:6], REFERENCE, 1.0)  # failed, score 0
    order = ranked([rejected, named_wrong, same, good])
    assert [(r.variant, r.rank) for r in order] == [
        ("same", 1), ("good", 1), ("named-wrong", 3), ("rejected", 4)
    ]  # fmt: skip


def test_the_table_has_a_line_per_row_best_first_with_its_reasons() -> None:
    rows_ = ranked([score("worse", "m", JUDGED[5:], REFERENCE, 1.0),
                    score("a", "m", JUDGED, REFERENCE, 1.0)])  # fmt: skip
    head, rule, first, second = table(rows_).splitlines()
    assert head.split()[:5] == ["rank", "variant", "model", "moments", "pass"]
    assert len(rule) >= len(head.rstrip())
    assert first.split()[:6] == ["1", "a", "m", "8", "62.5%", "37.5%"]
    assert first.endswith("offer_terms:2 timeout:1")
    assert second.split()[:5] == ["2", "worse", "m", "3", "0.0%"]
    assert table([]) == "no variants were run"


def test_a_variant_file_changes_only_what_it_declares(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(
        "name: short\nbase: b\nsystem_suffix: ' Be brief.'\n"
        "examples:\n  - user: 'Customer data: {}'\n    assistant: {headline: Hi, message: Hello}\n"
        "moment_types:\n  cart_abandoned:\n    system: Only carts.\n"
    )
    variant = load_variant_file(path)
    shipped = choose(["b"], [])[0]
    base = shipped.prompt("store_entry", AT_FLATIRON, "a")
    tried = variant.prompt("store_entry", AT_FLATIRON, "a")
    assert tried.variant == "short" and base.variant == "b"
    assert tried.messages[0]["content"] == base.messages[0]["content"] + " Be brief."
    assert tried.messages[1:-1] == [
        {"role": "user", "content": "Customer data: {}"},
        {"role": "assistant", "content": '{"headline":"Hi","message":"Hello"}'},
    ]
    assert tried.messages[-1] == base.messages[-1] and tried.schema == base.schema
    cart = variant.prompt("cart_abandoned", CART, "a")
    assert cart.messages[0]["content"] == "Only carts. Be brief."


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("name: x\nbase: z\n", "base"),
        ("name: x\nmoment_types: {nope: {}}\n", "moment_types"),
        ("name: 'bad name!'\n", "name"),
        ("name: x\nsystem_sufix: typo\n", "system_sufix"),
        ("{not: [valid", "not valid YAML"),
    ],
)
def test_a_bad_variant_file_stops_with_the_field_named(
    tmp_path: Path, text: str, named: str
) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(text)
    with pytest.raises(CommandError, match=named) as raised:
        load_variant_file(path)
    assert str(path) in str(raised.value)


def test_variants_are_chosen_by_name_and_names_are_not_reused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\n")
    (tmp_path / "new.yaml").write_text("name: new\n")
    assert [v.name for v in choose([], [tmp_path / "new.yaml"])] == ["a", "b", "new"]
    assert [v.name for v in choose(["new", "a"], [tmp_path / "new.yaml"])] == ["new", "a"]
    with pytest.raises(CommandError, match="already taken"):
        choose([], [tmp_path / "a.yaml"])
    with pytest.raises(CommandError, match="--variant 'c': no such variant"):
        choose(["c"], [])


def test_the_export_has_each_moment_once_with_its_outcomes_joined() -> None:
    moment = {"id": "m-1", "type": "store_entry", "event_ts": 5, "profile": {"user": "ann"},
              "features": {"cart": {"items": 0}}}  # fmt: skip
    held = {"id": "m-0", "type": "store_entry", "event_ts": 1, "suppressed": "holdout"}
    capped = {"id": "m-2", "type": "win_back", "event_ts": 9, "suppressed": "frequency_cap"}
    outcomes = [
        {"moment_id": "m-1", "outcome": "opened", "ts": 20},
        {"moment_id": "m-1", "outcome": "opened", "ts": 10},  # sent twice: the first time kept
        {"moment_id": "m-1", "outcome": "converted", "ts": 30},
        {"moment_id": "m-9", "outcome": "opened", "ts": 30},  # no such moment: joins nothing
    ]
    lines = rows([moment, capped, held, moment], outcomes)
    assert [(line["id"], line["group"]) for line in lines] == [
        ("m-0", "holdout"), ("m-1", "offer"), ("m-2", None)
    ]  # fmt: skip
    assert lines[1]["outcomes"] == {"opened": 10, "converted": 30}
    assert lines[1]["features"] == moment["features"] and lines[1]["profile"] == {"user": "ann"}
    assert lines[0]["outcomes"] == {}
    bare = rows([moment], outcomes, with_profile=False)
    assert "profile" not in bare[0] and bare[0]["features"] == moment["features"]
    assert rows([moment, capped], [], moment_type="win_back")[0]["id"] == "m-2"
