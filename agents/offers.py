"""Offers: for each moment, a message written by the LLM and checked.

This module writes an offer; agents/delivery.py reads the moments from
kairos.internal.moments and delivers each offer exactly once (in a Kafka
transaction with the moment's offset). Generation runs off the feature
path, with up to ``llm_max_in_flight`` generations open at once (so vLLM
batches them) while moments keep arriving.

A moment need not wait for its trip through the topic: the context agent
hands it to the early starts (agents/handoffs.py) as it writes it, and the generation starts at
once, in this process. When the delivery stage reads that moment from the
topic it waits for the generation already running instead of starting
another. The topic stays the record, and what a restart replays; the
hand-off only takes a produce and a fetch off each offer's path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agents.channels import LEGACY_CHANNEL, PRIOR
from agents.coupons import coupon_code, discount_pct
from agents.moment_types import fallback, prompt_for, select_context, with_terms
from agents.moments import offer_id
from agents.rules import Rules
from models.client import LLMClient, LLMError
from models.context import ContextSlice
from models.guardrails import Draft, Rejected, check
from models.prompts import STOP, Prompt, variant_for
from streams.codecs import now_ms
from streams.domain import Moment, Offer, Timings
from streams.errors import KairosError
from streams.metrics import Metrics
from streams.reference import Reference, ReferenceData
from streams.settings import Settings

log = logging.getLogger(__name__)

# (moment type, context, variant) -> the prompt to send.
PromptBuilder = Callable[[str, ContextSlice, str], Prompt]


def build_offer(
    moment: Moment,
    context: ContextSlice,
    draft: Draft,
    *,
    source: str,
    fallback_reason: str | None,
    model: str,
    prompt_version: str,
    variant: str,
    pct: int,
    timings: Timings,
    settings: Settings,
) -> Offer:
    """The record notification services consume from kairos.offers."""
    oid = offer_id(moment["id"])
    return {
        "offer_id": oid,
        "user": moment["user"],
        # Chosen with the moment (agents/channels.py); one recorded before
        # moments had a channel goes by push, as it would have then.
        "channel": moment.get("channel", LEGACY_CHANNEL),
        "channel_reason": moment.get("channel_reason", PRIOR),
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


class OfferWriter:
    """Writes a moment's offer from the settings, rules and reference data in force.

    ``prompt`` builds each prompt; `kairos eval` passes one that tries a
    variant not yet shipped, the worker keeps the moment types' own.
    """

    def __init__(
        self, settings: Settings, rules: Rules, reference: ReferenceData, metrics: Metrics,
        prompt: PromptBuilder = prompt_for,
    ) -> None:  # fmt: skip
        self.settings, self.rules = settings, rules
        self.reference, self.metrics = reference, metrics
        self.prompt = prompt

    async def generate(self, client: LLMClient, moment: Moment) -> Offer:
        """The moment's offer, written; anything that fails is a bug, raised as
        :class:`GenerationFailed` (the model's own failures fall back inside)."""
        try:
            return await write_offer(self, client, moment)
        except Exception as exc:  # not CancelledError: a dropped generation just stops
            log.exception("offer failed for moment %s", moment.get("id"))
            raise GenerationFailed(repr(exc)) from exc


async def write_offer(
    writer: OfferWriter, client: LLMClient, moment: Moment, reference: Reference | None = None
) -> Offer:
    """Select context (from ``reference``, else the reference data in force),
    prompt the model, check its answer, or fall back."""
    settings, metrics = writer.settings, writer.metrics
    started = now_ms()
    context = select_context(
        moment["profile"],
        moment,
        reference or writer.reference.current,
        writer.rules.rule(moment["type"]),
        budget_tokens=settings.llm_context_tokens,
        vectors=writer.reference.vectors,  # products like the person's taste
    )
    pct = discount_pct(context.loyalty_tier)
    # Moments carry their variant; ones written before they did get the same one again.
    variant = moment.get("variant") or variant_for(moment["user"], moment["type"])
    prompt = writer.prompt(moment["type"], context, variant)
    metrics.stage_latency.labels("prompt").observe((now_ms() - started) / 1000)
    source, reason, model, llm_ms, wait_ms = "model", None, client.model, None, None
    try:
        completion = await client.chat(
            prompt.messages,
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
            json_schema=prompt.schema,
            stop=STOP,
        )
        model, llm_ms = completion.model, round(completion.seconds * 1000)
        wait_ms = round(completion.waited_s * 1000)
        draft = check(completion.text, context, completion.finish_reason)
    except (LLMError, Rejected) as exc:
        source, reason = "fallback", exc.reason
        draft = fallback(context, pct)
        metrics.fallbacks.labels(reason).inc()
    draft = with_terms(draft, context, pct, settings.coupon_ttl_s)
    generated = now_ms()
    timings: Timings = {
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
    offer = build_offer(
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
    metrics.offer_channels.labels(moment["type"], offer["channel"], offer["channel_reason"]).inc()
    return offer


class GenerationFailed(KairosError):
    """Writing an offer failed (a bug); the moment goes to the dead letters."""


def llm_client(settings: Settings, metrics: Metrics) -> LLMClient:
    return LLMClient(
        settings.llm_base_url,
        settings.llm_model,
        api_key=settings.llm_api_key,
        ca_file=settings.llm_ca_file,
        timeout_s=settings.llm_timeout_s,
        retries=settings.llm_retries,
        max_in_flight=settings.llm_max_in_flight,
        breaker_failures=settings.llm_breaker_failures,
        breaker_cooldown_s=settings.llm_breaker_cooldown_s,
        metrics=metrics,
    )
