"""Coupons, minted by kairos from rules; never taken from model text.

The code is an HMAC of the offer id under ``KAIROS_COUPON_SECRET``: the same
offer always gets the same code (a replayed offer is the same offer), and a
code cannot be guessed without the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

DISCOUNT_BY_TIER = {"gold": 20, "silver": 15}
DEFAULT_DISCOUNT = 10


def discount_pct(loyalty_tier: str | None) -> int:
    return DISCOUNT_BY_TIER.get((loyalty_tier or "").lower(), DEFAULT_DISCOUNT)


def coupon_code(offer_id: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), offer_id.encode(), hashlib.sha256).digest()
    return "K" + base64.b32encode(digest).decode()[:11]
