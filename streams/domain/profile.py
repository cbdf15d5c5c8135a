"""A person's state in the profiles table; its layout and bounds are agents/profile.py's."""

from __future__ import annotations

from typing import Any, TypedDict


class Profile(TypedDict, total=False):
    """Every key is optional to the type: a merge stub has only ``user`` and
    ``merged_into``, and a profile stored by an older version lacks the newer
    keys until :func:`agents.profile.upgraded` fills them."""

    v: int
    user: str
    merged_into: str
    traits: dict[str, list[Any]]  # name -> [value, event time]
    views: list[list[Any]]  # [ts, product id, category], newest last
    recent: list[str]  # "ts|kind|product|label", oldest first
    cart: dict[str, list[int]]  # product id -> [quantity, ts]
    visit: list[Any]  # [store id or None, entered, last, trigger id, fired]
    last_store: list[Any] | None  # [store id, entered, last]
    moments: dict[str, int]  # moment type -> its last time
    orders: list[Any]  # [count, total, last ts]
    tickets: dict[str, list[Any]]  # ticket id -> [status, ts]
    offers: list[list[Any]]  # [offer id, moment type, ts, variant, group, channel]
    outcomes: dict[str, dict[str, int]]  # offer id -> {action: ts}
    replies: list[list[Any]]  # [ts, text, dropped, offer id, terms] (agents/replies.py)
    ids: list[str]  # other ids merged into this one
    channels: dict[str, list[int]]  # channel -> [delivered, opened, redeemed] (agents/channels.py)
    tz: list[Any] | None  # [time zone, event time]: the latest Segment context.timezone
    seen: str  # the last event ids, as tokens
    tiles: dict[str, list[Any]]  # windowed features (agents/features.py)
    session: list[Any]
    n: int  # events applied
    updated: int  # the latest event's time
    taste: list[Any]  # [as of, scale, base64 int8]: the taste vector (agents/taste.py)
    asof: dict[str, int]  # feature family -> its latest event's time (agents/freshness.py)
