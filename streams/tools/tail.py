"""``kairos tail``: a sample downstream consumer of kairos.offers.

What a notification service does with the topic: read offers (committed
ones: kairos writes each in a transaction, so a read_committed consumer
sees each offer once), drop any it has already handled, and act on the
rest; here, print them. Dropping by offer id (the idempotency key) still
matters to a service that restarts from an older position of its own, or
when ``KAIROS_OFFERS_EXACTLY_ONCE`` is off and a crash replays offers. The
ids seen are kept in a bounded memory, as a real consumer would keep them
in its own store.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from streams import clients
from streams.settings import Settings

REMEMBERED = 100_000


class SeenOffers:
    """The last ``limit`` offer ids handled."""

    def __init__(self, limit: int = REMEMBERED) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def first_time(self, offer_id: str) -> bool:
        if offer_id in self._ids:
            self._ids.move_to_end(offer_id)
            return False
        self._ids[offer_id] = None
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        return True


def describe(offer: dict[str, Any]) -> str:
    """One line per offer: when, who, where, what."""
    at = time.strftime("%H:%M:%S", time.localtime(offer["timings"]["emitted_at"] / 1000))
    coupon = offer["coupon"]
    where = offer["store"]["name"] if offer.get("store") else offer["moment"]["type"]
    source = offer["source"] + (f" ({offer['fallback_reason']})" if offer.get("fallback_reason")
                                else "")  # fmt: skip
    return (
        f"{at} {offer['offer_id']} {offer['user']} @ {where}: "
        f"{offer['headline']} | {offer['message']} "
        f"[{coupon['code']}, {coupon['discount_pct']}% off] {source}"
    )


async def tail(
    settings: Settings,
    out: Callable[[str], None],
    *,
    from_beginning: bool,
    group: str | None,
    count: int | None,
    idle_s: float | None,
    as_json: bool,
) -> tuple[int, int]:
    """Print distinct offers until ``count`` or ``idle_s`` without one; (printed, duplicates)."""
    consumer = clients.consumer(
        settings,
        settings.topics.offers,
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group is not None,
        isolation_level="read_committed",  # offers land in transactions
    )
    await consumer.start()
    seen = SeenOffers()
    printed = duplicates = 0
    last = time.monotonic()
    try:
        while count is None or printed < count:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    last = time.monotonic()
                    try:
                        offer = orjson.loads(record.value)
                        offer_id = offer["offer_id"]
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        out(f"(unreadable record at offset {record.offset} skipped)")
                        continue
                    if not seen.first_time(offer_id):
                        duplicates += 1
                        continue
                    out(record.value.decode() if as_json else describe(offer))
                    printed += 1
                    if printed == count:
                        return printed, duplicates
            if idle_s is not None and time.monotonic() - last > idle_s:
                break
    finally:
        await consumer.stop()
    return printed, duplicates
