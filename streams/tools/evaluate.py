"""``kairos eval``: prompt variants and models judged offline, on recorded moments.

Every moment on kairos.internal.moments carries the person's profile as it
was when the moment fired (agents/fold.py), so each moment's context is
built from that snapshot alone, never from the profile as it is now: the
eval set is point-in-time correct. So is the reference data: a moment also
carries the store and products its context drew on, as they were
(``reference``), and eval builds the context from those; a moment recorded
before moments carried them is judged with the reference data in force
now. A JSON-lines file of moments (what `kairos dataset export` writes)
serves as well.

Each variant (streams/tools/variants.py) and model writes every moment's
offer through the offers stage's own code (agents/offers.py
``write_offer``: the context selection, the prompt, the LLM client with its
deadline and retries, the guardrails and the template), so it judges exactly
what production would send; only the prompt is the variant's. Up to
``concurrency`` requests are open at once, as in the worker. Variants run
one after the other, so each one's latency is its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
from prometheus_client import CollectorRegistry

from agents.moment_types import MOMENT_TYPES, select_context
from agents.offers import OfferWriter, write_offer
from agents.reference import read_update
from agents.rules import Rules
from models.client import Completion, LLMClient, LLMError
from models.context import ContextSlice
from streams.domain import Moment
from streams.errors import CommandError, ReferenceDataError
from streams.metrics import Metrics
from streams.reference import Reference, ReferenceData, parse_product, parse_store
from streams.runtime.topics import internal_name
from streams.settings import Settings
from streams.tools.report import read_all, read_records
from streams.tools.scores import Judged, Row, ranked, score
from streams.tools.variants import Variant


@dataclass(frozen=True)
class Case:
    """A moment to judge, with the context its snapshot gives (the same for every variant)."""

    moment: Moment
    context: ContextSlice
    reference: Reference  # what the context was built from: the moment's own, or today's


@dataclass(frozen=True)
class Options:
    endpoint: str
    models: list[str]
    variants: list[Variant]
    concurrency: int
    timeout_s: float | None = None  # per request, retries included: the settings' if None


# The model's answers to the moment a task is judging: write_offer asks the
# client, and this is how each task gets its request's tokens and latency.
_answers: ContextVar[list[Completion | LLMError]] = ContextVar("eval_answers")


class RecordingClient(LLMClient):
    """The production client, keeping each answer for the moment being judged."""

    async def chat(self, *args: Any, **kwargs: Any) -> Completion:
        answers = _answers.get([])  # outside a judged moment: kept nowhere
        try:
            completion = await super().chat(*args, **kwargs)
        except LLMError as exc:
            answers.append(exc)
            raise
        answers.append(completion)
        return completion


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Moments from a JSON-lines file; a line that is not a JSON object stops with its number."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror or exc}") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise CommandError(f"{path}, line {n}: not valid JSON: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise CommandError(f"{path}, line {n}: expected a moment, a JSON object with an id")
        out.append(record)
    return out


async def recorded(settings: Settings) -> tuple[list[dict[str, Any]], ReferenceData]:
    """The moments on kairos.internal.moments, and the reference data in force:
    the files, with the reference topic's updates applied, as a worker has it."""
    moments = await read_all(settings, internal_name(settings, "moments"))
    reference = ReferenceData(settings.reference_dir)
    for record in await read_records(settings, settings.topics.reference):
        try:
            reference.apply(*read_update(record.key, record.value))
        except ReferenceDataError:
            continue  # the worker dead-letters it and keeps what it had: so does eval
    return moments, reference


def cases(
    records: Iterable[dict[str, Any]], reference: ReferenceData, rules: Rules, settings: Settings,
    moment_type: str | None = None, limit: int | None = None,
) -> tuple[list[Case], Counter[str]]:  # fmt: skip
    """The moments to judge, each once, oldest first (the latest ``limit``), and
    how many were left out, by why."""
    skipped: Counter[str] = Counter()
    unique = {record["id"]: record for record in records if isinstance(record.get("id"), str)}
    chosen = []
    for record in sorted(unique.values(), key=lambda m: (m.get("event_ts") or 0, m["id"])):
        if moment_type is not None and record.get("type") != moment_type:
            continue
        recorded = as_recorded(record, reference.current)
        problem, context = _context(record, recorded, rules, settings)
        if problem:
            skipped[problem] += 1
        else:
            assert context is not None
            chosen.append(Case(cast(Moment, record), context, recorded))
    return (chosen[-limit:] if limit else chosen), skipped


def as_recorded(record: dict[str, Any], current: Reference) -> Reference:
    """The stores and products the moment recorded (agents/moment_types
    ``reference_used``), or ``current`` for a moment without a readable slice.
    An empty slice is what the moment's context had then (no store, say), not
    a slice missing: it is kept, not replaced by today's data."""
    held = record.get("reference")
    if not isinstance(held, dict):  # recorded before moments carried their slice
        return current
    try:
        stores = [parse_store(row) for row in held.get("stores") or []]
        products = [parse_product(row) for row in held.get("products") or []]
    except (ReferenceDataError, AttributeError):
        return current
    return Reference.of(stores, products)


def _context(
    record: dict[str, Any], reference: Reference, rules: Rules, settings: Settings
) -> tuple[str | None, ContextSlice | None]:
    if record.get("type") not in MOMENT_TYPES:
        return "unknown moment type", None
    if not isinstance(record.get("profile"), dict):
        return "no profile snapshot", None
    if record.get("store_id") is not None and record["store_id"] not in reference.stores:
        return "store not in the reference data", None
    moment = cast(Moment, record)
    rule, budget = rules.rule(moment["type"]), settings.llm_context_tokens
    try:
        context = select_context(moment["profile"], moment, reference, rule, budget)
    except (KeyError, TypeError, ValueError, IndexError):
        return "unreadable moment", None
    return None, context


async def run(
    settings: Settings, rules: Rules, reference: ReferenceData, chosen: list[Case],
    options: Options,
) -> list[Row]:  # fmt: skip
    """Every variant on every model (or its own), ranked best first."""
    rows = []
    for variant in options.variants:
        for model in [variant.model] if variant.model else options.models:
            writer = OfferWriter(settings, rules, reference, Metrics(CollectorRegistry()),
                                 prompt=variant.prompt)  # fmt: skip
            client = client_for(settings, options.endpoint, model, options.concurrency,
                                options.timeout_s)  # fmt: skip
            try:
                judged, wall_s = await judge_all(writer, client, chosen, options.concurrency)
            finally:
                await client.aclose()
            rows.append(score(variant.name, model, judged, reference.current, wall_s))
    return ranked(rows)


def client_for(
    settings: Settings, endpoint: str, model: str, concurrency: int,
    timeout_s: float | None = None,
) -> LLMClient:  # fmt: skip
    """The worker's client (agents/offers.py ``llm_client``), on ``endpoint`` and
    ``model``, with ``timeout_s`` per request (the settings' if None)."""
    return RecordingClient(
        endpoint,
        model,
        api_key=settings.llm_api_key,
        ca_file=settings.llm_ca_file,
        timeout_s=settings.llm_timeout_s if timeout_s is None else timeout_s,
        retries=settings.llm_retries,
        max_in_flight=concurrency,
        breaker_failures=settings.llm_breaker_failures,
        breaker_cooldown_s=settings.llm_breaker_cooldown_s,
    )


async def judge_all(
    writer: OfferWriter, client: LLMClient, chosen: list[Case], concurrency: int
) -> tuple[list[Judged], float]:
    """Each case judged, in order, with ``concurrency`` requests open (the client's
    slots); and the seconds it took."""
    out: list[Judged | None] = [None] * len(chosen)
    todo: Iterator[tuple[int, Case]] = enumerate(chosen)

    async def work() -> None:
        for index, case in todo:  # shared: each task takes the next case
            out[index] = await judge(writer, client, case)

    # Twice as many tasks as slots: while a request is out, another task has
    # its prompt built and waits for the slot, so a slot that frees is taken
    # at once, not after the guardrails and the next prompt have run.
    tasks = min(2 * concurrency, len(chosen)) or 1
    started = time.monotonic()
    await asyncio.gather(*(work() for _ in range(tasks)))
    return [j for j in out if j is not None], time.monotonic() - started


async def judge(writer: OfferWriter, client: LLMClient, case: Case) -> Judged:
    answers: list[Completion | LLMError] = []
    _answers.set(answers)  # this task's own context: only its requests land here
    # A file's moments may lack the stage times; they only feed the offer's timings.
    moment = cast(Moment, {"ingested_at": 0, "detected_at": 0, **case.moment})
    try:
        offer = await write_offer(writer, client, moment, case.reference)
    except Exception as exc:  # the worker dead-letters such a moment (a bug): count it
        return Judged(case.context, False, f"generation_failed:{type(exc).__name__}", "", "", None)
    completion = next((a for a in reversed(answers) if isinstance(a, Completion)), None)
    return Judged(
        context=case.context,
        passed=offer["source"] == "model",
        reason=offer["fallback_reason"],
        headline=offer["headline"],
        message=offer["message"],
        product_id=offer["product_id"],
        prompt_tokens=completion.prompt_tokens if completion else None,
        completion_tokens=completion.completion_tokens if completion else None,
        latency_s=completion.seconds if completion else None,
    )
