"""Offers: for each moment, a message written by the LLM, checked, delivered.

Generation runs off the feature path: the context agent writes moments to a
topic, and this agent keeps up to ``llm_max_in_flight`` generations open at
once (so vLLM batches them) while moments keep arriving. A moment is acked
only when its offer has landed on kairos.offers; a worker restart replays
unacked moments, and the deterministic offer id lets consumers drop the
duplicates.

A moment need not wait for its trip through the topic: the context agent
hands it to :data:`early` as it writes it, and the generation starts at
once, in this process. When the agent reads that moment from the topic it
waits for the generation already running instead of starting another, and
acks the moment once the offer has landed, as before. The topic stays the
record, and what a restart replays; the hand-off only takes a produce, a
fetch and a pass through Faust's consumer off each offer's path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from faust.types import TP

from agents.coupons import coupon_code, discount_pct
from agents.moments import offer_id
from agents.rules import cached_rules
from models.client import LLMClient, LLMError
from models.context import ContextSlice, select_context
from models.guardrails import Draft, Rejected, check, fallback
from models.prompts import prompt_for, variant_for
from streams import topics
from streams.acks import process_in_order
from streams.app import app, metrics, settings
from streams.codecs import dumps, loads, now_ms
from streams.deadletters import crash_worker, dead_letter
from streams.reference import current_reference
from streams.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "push"


def build_offer(
    moment: dict[str, Any],
    context: ContextSlice,
    draft: Draft,
    *,
    source: str,
    fallback_reason: str | None,
    model: str,
    prompt_version: str,
    variant: str,
    pct: int,
    timings: dict[str, int],
    settings: Settings,
) -> dict[str, Any]:
    """The record notification services consume from kairos.offers."""
    oid = offer_id(moment["id"])
    return {
        "offer_id": oid,
        "user": moment["user"],
        "channel": CHANNEL,
        "headline": draft.headline,
        "message": draft.message,
        "product_id": draft.product_id,
        "coupon": {
            "code": coupon_code(oid, settings.coupon_secret.get_secret_value()),
            "discount_pct": pct,
            "expires_at": timings["emitted_at"] + int(settings.coupon_ttl_s * 1000),
        },
        "moment": {"id": moment["id"], "type": moment["type"], "store_id": moment["store_id"]},
        "store": {"id": context.store.id, "name": context.store.name} if context.store else None,
        "source": source,
        "fallback_reason": fallback_reason,
        "model": model,
        "prompt_version": prompt_version,
        "variant": variant,
        "context_used": list(context.used),
        "timings": timings,
    }


async def write_offer(client: LLMClient, moment: dict[str, Any]) -> dict[str, Any]:
    """Select context, prompt the model, check its answer, or fall back."""
    started = now_ms()
    reference = current_reference(settings.reference_dir)
    context = select_context(
        moment["profile"],
        moment,
        reference,
        recent_interest_ms=cached_rules(settings.rules_file).rules.store_entry.recent_interest_ms,
        budget_tokens=settings.llm_context_tokens,
    )
    pct = discount_pct(context.loyalty_tier)
    # Moments carry their variant; ones written before they did get the same one again.
    variant = moment.get("variant") or variant_for(moment["user"], moment["type"])
    prompt = prompt_for(moment["type"], context, pct, variant)
    metrics.stage_latency.labels("prompt").observe((now_ms() - started) / 1000)
    source, reason, model, llm_ms, wait_ms = "model", None, client.model, None, None
    try:
        completion = await client.chat(
            prompt.messages,
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
            json_schema=prompt.schema,
        )
        model, llm_ms = completion.model, round(completion.seconds * 1000)
        wait_ms = round(completion.waited_s * 1000)
        draft = check(completion.text, context, pct, completion.finish_reason)
    except (LLMError, Rejected) as exc:
        source, reason = "fallback", exc.reason
        draft = fallback(context, pct)
        metrics.fallbacks.labels(reason).inc()
    generated = now_ms()
    timings = {
        "event_ts": moment["event_ts"],
        "ingested_at": moment["ingested_at"],
        "moment_at": moment["detected_at"],
        "generation_started_at": started,
        "generation_ms": generated - started,
        "llm_wait_ms": wait_ms,  # for one of the client's in-flight slots
        "llm_ms": llm_ms,  # the model's answer, retries included; None if it never answered
        "emitted_at": generated,
    }
    metrics.stage_latency.labels("moment_to_generation").observe(
        max(0, started - moment["detected_at"]) / 1000
    )
    metrics.stage_latency.labels("generation").observe((generated - started) / 1000)
    metrics.offers.labels(moment["type"], source, prompt.variant).inc()
    return build_offer(
        moment,
        context,
        draft,
        source=source,
        fallback_reason=reason,
        model=model,
        prompt_version=prompt.version,
        variant=prompt.variant,
        pct=pct,
        timings=timings,
        settings=settings,
    )


class GenerationFailed(Exception):
    """Writing an offer failed (a bug); the moment goes to the dead letters."""


@dataclass(frozen=True)
class Writer:
    """What an offer is written and delivered with, while the agent runs.

    Offers go out through a producer of their own, without linger: each is
    awaited by a person, and they are few. In the worker's producer an
    offer waited out ``producer_linger_ms`` before it was sent, there to
    fill batches of profile writes.
    """

    client: LLMClient
    producer: AIOKafkaProducer

    @classmethod
    async def start(cls) -> Writer:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=f"{settings.app_id}-offers",
            acks=app.conf.producer_acks,
            linger_ms=0,
        )
        await producer.start()
        return cls(llm_client(), producer)

    async def stop(self) -> None:
        try:
            await self.producer.stop()
        finally:
            await self.client.aclose()


async def generate(writer: Writer, moment: dict[str, Any]) -> None:
    """Write the moment's offer and deliver it to kairos.offers.

    A failed send propagates (the worker must restart); anything else that
    fails is a bug, raised as :class:`GenerationFailed`.
    """
    try:
        offer = await write_offer(writer.client, moment)
    except Exception as exc:
        log.exception("offer failed for moment %s", moment.get("id"))
        raise GenerationFailed(repr(exc)) from exc
    await writer.producer.send_and_wait(
        topics.offers.get_topic_name(), dumps(offer), key=moment["user"].encode()
    )
    delivered = now_ms()
    metrics.stage_latency.labels("delivery").observe(
        max(0, delivered - offer["timings"]["emitted_at"]) / 1000
    )
    metrics.events_out.labels("offers", offer["moment"]["type"]).inc()


class EarlyStarts:
    """Generations started as their moments are detected, by moment id.

    Only moments whose partition of kairos.moments this worker owns start
    early (the agent that will read them is this process's), and at most
    ``limit`` wait to be claimed, so a stalled model cannot pile them up:
    beyond that a moment waits for the agent, as it would without them.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.writer: Writer | None = None  # set while the agent runs
        self._started: dict[str, tuple[asyncio.Future[None], TP]] = {}

    def start(self, moment: dict[str, Any], partition: int) -> None:
        """Start the offer for ``moment`` (just detected; ``partition`` is its
        user's) now, if this worker may."""
        if self.writer is None or moment.get("suppressed"):
            return
        owned = app.assignor.assigned_actives()
        tp = TP(topics.moments.get_topic_name(), partition)
        if tp not in owned:
            return
        if len(self._started) >= self.limit:
            self.forget(keep=owned)
            if len(self._started) >= self.limit:
                return
        self._started[moment["id"]] = (asyncio.ensure_future(generate(self.writer, moment)), tp)
        metrics.offer_starts.labels("detection").inc()

    def claim(self, moment_id: str) -> asyncio.Future[None] | None:
        """The generation started for ``moment_id``, now the caller's to wait for."""
        started = self._started.pop(moment_id, None)
        return started[0] if started else None

    def forget(self, keep: Any = ()) -> None:
        """Drop what no agent here will claim: moments of partitions not in ``keep``.

        A generation still running carries on and delivers; the partition's
        new owner writes the same offer again, which consumers drop by id.
        """
        for moment_id, (future, tp) in list(self._started.items()):
            if tp not in keep:
                del self._started[moment_id]
                future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # logged where it was raised


early = EarlyStarts(limit=2 * settings.llm_max_in_flight)


async def deliver(writer: Writer, message: Any) -> None:
    try:
        moment = loads(message.value)
    except Exception as exc:  # a bug must not lose the moment
        log.exception("unreadable moment at %s/%s", message.topic, message.offset)
        await (
            await dead_letter(
                message, code="internal_error", reason=f"offer failed: {exc!r}", stage="offers"
            )
        )
        return
    if moment.get("suppressed"):  # recorded, no offer: a holdout, quiet hours, a cap
        return
    started: Awaitable[None] | None = early.claim(moment["id"])
    if started is None:
        metrics.offer_starts.labels("topic").inc()
        started = generate(writer, moment)
    try:
        await started
    except GenerationFailed as exc:
        await (
            await dead_letter(
                message, code="internal_error", reason=f"offer failed: {exc}", stage="offers"
            )
        )


def llm_client() -> LLMClient:
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    return LLMClient(
        settings.llm_base_url,
        settings.llm_model,
        api_key=key,
        timeout_s=settings.llm_timeout_s,
        retries=settings.llm_retries,
        max_in_flight=settings.llm_max_in_flight,
        breaker_failures=settings.llm_breaker_failures,
        breaker_cooldown_s=settings.llm_breaker_cooldown_s,
        metrics=metrics,
    )


@app.agent(topics.moments, name="kairos.offers")
async def offers(stream: Any) -> None:
    writer = await Writer.start()

    async def handle(event: Any) -> Awaitable[Any]:
        return asyncio.ensure_future(deliver(writer, event.message))

    early.writer = writer
    try:
        await process_in_order(
            stream, handle, window=2 * settings.llm_max_in_flight, on_failure=crash_worker
        )
    finally:
        early.writer = None
        early.forget()
        await writer.stop()
