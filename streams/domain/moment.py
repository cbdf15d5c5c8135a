"""A detected moment: what the offers stage needs to write its offer."""

from __future__ import annotations

from typing import Any, TypedDict

from streams.domain.profile import Profile


class _Required(TypedDict):
    id: str  # deterministic: the same trigger always gives the same id
    type: str  # a key of agents.moment_types.MOMENT_TYPES
    user: str
    store_id: str | None
    event_ts: int  # when it happened, in event time
    trigger_id: str


class Moment(_Required, total=False):
    cart: list[str]  # cart_abandoned: the products in the cart
    product_id: str  # browse_abandoned: the product looked at
    views: int  # browse_abandoned: how often, in the session
    profile: Profile  # the profile as it was at the moment
    features: dict[str, Any]
    variant: str  # the prompt's A/B variant
    # The stores and products its context drew on, as rows: {"stores", "products"}
    reference: dict[str, list[dict[str, Any]]]
    suppressed: str  # why no offer goes out: holdout, quiet_hours, frequency_cap, stale,
    # no_channel
    channel: str  # the channel its offer goes by (agents/channels.py)
    channel_reason: str  # why: only, prior, history
    send_at: int  # a timed moment's: the event time it was planned for (agents/sendtime.py)
    ingested_at: int
    detected_at: int
