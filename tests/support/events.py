"""What the event tests share: an encoder and a fixed event time."""

from __future__ import annotations

import orjson


def enc(value: object) -> bytes:
    return orjson.dumps(value)


TS = "2026-11-21T10:00:00Z"
TS_MS = 1795255200000
