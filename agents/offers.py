"""Offers: for each moment, a message written by the LLM, checked, delivered.

Generation runs off the feature path: the context agent only writes moments
to a topic, and this agent keeps up to ``llm_max_in_flight`` generations
open at once (so vLLM batches them) while moments keep arriving. A moment is
acked only when its offer has landed on kairos.offers; a worker restart
replays unacked moments, and the deterministic offer id lets consumers
drop the duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

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


async def deliver(client: LLMClient, message: Any) -> None:
    try:
        moment = loads(message.value)
        if moment.get("suppressed"):  # recorded, no offer: a holdout, quiet hours, a cap
            return
        offer = await write_offer(client, moment)
    except Exception as exc:  # a bug must not lose the moment
        log.exception("offer failed for moment at %s/%s", message.topic, message.offset)
        await (
            await dead_letter(
                message, code="internal_error", reason=f"offer failed: {exc!r}", stage="offers"
            )
        )
        return
    await (await topics.offers.send(key=message.key, value=dumps(offer)))
    delivered = now_ms()
    metrics.stage_latency.labels("delivery").observe(
        max(0, delivered - offer["timings"]["emitted_at"]) / 1000
    )
    metrics.events_out.labels("offers", offer["moment"]["type"]).inc()


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
    client = llm_client()

    async def handle(event: Any) -> Awaitable[Any]:
        return asyncio.ensure_future(deliver(client, event.message))

    try:
        await process_in_order(
            stream, handle, window=2 * settings.llm_max_in_flight, on_failure=crash_worker
        )
    finally:
        await client.aclose()
