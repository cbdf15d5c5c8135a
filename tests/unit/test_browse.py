"""Browse abandonment (agents/moment_types/browse_abandoned.py): the same
product viewed three times in a session, never added to the cart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from agents.fold import Fold
from agents.moment_types import MOMENT_TYPES, fallback, prompt_for, select_context, with_terms
from agents.moment_types.browse_abandoned import browsed
from agents.rules import Rules
from models.context import ContextSlice
from models.guardrails import check
from streams.reference import load_reference
from tests.support.harness import policy

REF = load_reference()
MINUTE = 60_000
T0 = 1_795_000_000_000
ON = Rules.model_validate({"rules": {"browse_abandoned": {"enabled": True, "holdout_pct": 0}}})


def track(n: int, name: str, product: str, at: int) -> dict[str, Any]:
    props = {"product_id": product, "category": REF.products[product].category}
    return {"v": 1, "id": f"e{n}", "kind": "track", "user": "u1", "ts": at, "at": at,
            "name": name, "props": props}  # fmt: skip


class Person:
    """One person's profile kept across folds, as the table would keep it."""

    def __init__(self, rules: Rules = ON) -> None:
        self.policy = policy(rules)
        self.stored: dict[str, Any] | None = None
        self.timers: set[tuple[int, str, str]] = set()
        self.moments: list[dict[str, Any]] = []

    def fold(self) -> Fold:
        return Fold(lambda key: orjson.loads(orjson.dumps(self.stored)) if self.stored else None,
                    self.policy)  # fmt: skip

    def keep(self, fold: Fold) -> None:
        self.stored = fold.profiles.get("u1", self.stored)
        self.timers |= fold.timers
        self.moments += [moment for _event, moment in fold.moments]

    def send(self, *events: dict[str, Any]) -> None:
        fold = self.fold()
        for event in events:
            fold.apply(event)
        self.keep(fold)

    def tick(self, now: int) -> None:
        """Fire the browse timers due by ``now``, as a tick does once the watermark passes."""
        fold = self.fold()
        for due, rule, user in sorted(self.timers):
            if due <= now and rule == "browse_abandoned":
                self.timers.discard((due, rule, user))
                fold.fire(rule, user, now, now)  # the wall clock agrees with event time
        self.keep(fold)


def views(product: str, times: int, start: int = T0) -> list[dict[str, Any]]:
    return [track(n, "Product Viewed", product, start + n * MINUTE) for n in range(times)]


def test_three_views_in_a_session_then_silence_is_a_moment_once() -> None:
    person = Person()
    person.send(*views("p-101", 3))
    [(due, rule, _user)] = person.timers
    assert (due, rule) == (T0 + 2 * MINUTE + 30 * MINUTE, "browse_abandoned")
    person.tick(due)
    [moment] = person.moments
    assert (moment["type"], moment["product_id"], moment["views"]) == (
        "browse_abandoned", "p-101", 3,
    )  # fmt: skip
    assert moment["event_ts"] == due and moment["trigger_id"] == f"session@{T0}"
    person.tick(due + 60 * MINUTE)
    assert len(person.moments) == 1  # once per session


def test_two_views_or_a_product_put_in_the_cart_is_no_moment() -> None:
    few = Person()
    few.send(*views("p-101", 2))
    assert few.timers == set()
    added = Person()
    added.send(*views("p-101", 3), track(9, "Product Added", "p-101", T0 + 5 * MINUTE))
    added.tick(T0 + 3 * 60 * MINUTE)
    assert added.moments == []
    assert browsed(added.stored or {}) is None


def test_a_later_view_moves_the_wait_and_a_new_session_starts_over() -> None:
    person = Person()
    person.send(*views("p-101", 3))
    person.send(track(7, "Product Viewed", "p-101", T0 + 20 * MINUTE))
    person.tick(T0 + 40 * MINUTE)  # the first wait ran out, but the session went on
    assert person.moments == []
    person.tick(T0 + 50 * MINUTE)
    [moment] = person.moments
    assert moment["event_ts"] == T0 + 50 * MINUTE and moment["views"] == 4


def test_it_is_off_unless_the_rules_file_turns_it_on() -> None:
    person = Person(Rules())
    person.send(*views("p-101", 5))
    assert person.timers == set()
    assert Rules().rule("browse_abandoned").enabled is False


def test_its_context_prompt_and_template_are_about_the_product_looked_at() -> None:
    person = Person()
    person.send(*views("p-101", 3))
    person.tick(T0 + 3 * 60 * MINUTE)
    [moment] = person.moments
    context = select_context(moment["profile"], moment, REF, ON.rule("browse_abandoned"))
    product = REF.products["p-101"]
    assert context.store is None and [p.id for p in context.products] == ["p-101"]
    assert context.as_prompt_data() == {"viewed": [product.name]}
    assert context.used == ("view:p-101",)
    prompt = prompt_for("browse_abandoned", context)
    assert prompt.version == "browse_abandoned.v2"
    assert product.name in prompt.messages[-1]["content"]
    assert prompt.schema["properties"]["product_id"]["enum"] == ["p-101"]
    draft = fallback(context, 10)
    assert draft.product_id == "p-101" and product.name in draft.headline
    message = f"The {product.name} is still here for you."
    answer = {"headline": "Still want it?", "product_id": "p-101", "message": message}
    assert check(orjson.dumps(answer).decode(), context).product_id == "p-101"


def test_every_moment_type_has_its_section_in_the_rules_and_a_template() -> None:
    rules = Rules()
    for name, kind in MOMENT_TYPES.items():
        assert isinstance(rules.rule(name), kind.config)
        assert (kind.detect is None) != (kind.timer is None), name  # one rule, of one kind


def test_the_readme_shows_its_template_message_as_it_is() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    product = REF.products["p-102"]
    context = ContextSlice(None, "Kofi", None, None, (product,), (), "browse_abandoned", "viewed")
    draft = with_terms(fallback(context, 15), context, 15, 4 * 3600)
    assert f"{draft.headline}\n{draft.message}\n" in readme
