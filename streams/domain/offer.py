"""The offer record notification services read from kairos.offers."""

from __future__ import annotations

from typing import TypedDict

# The ways an offer can reach a person, declared once: the offer's
# ``channel`` is one of these (agents/channels.py chooses it).
CHANNELS = ("push", "email", "sms")


class Coupon(TypedDict):
    code: str
    discount_pct: int
    expires_at: int


class Timings(TypedDict):
    event_ts: int
    ingested_at: int
    moment_at: int
    generation_started_at: int
    generation_ms: int
    llm_wait_ms: int | None  # for one of the client's in-flight slots
    llm_ms: int | None  # the model's answer, retries included; None if it never answered
    emitted_at: int


class Offer(TypedDict):
    offer_id: str
    user: str
    channel: str  # one of CHANNELS
    channel_reason: str  # why that channel: only, prior or history (agents/channels.py)
    headline: str
    message: str
    product_id: str | None
    coupon: Coupon
    moment: dict[str, str | None]  # id, type, store_id
    store: dict[str, str] | None  # id, name
    source: str  # model or fallback
    fallback_reason: str | None
    model: str
    prompt_version: str
    variant: str
    context_used: list[str]
    timings: Timings
