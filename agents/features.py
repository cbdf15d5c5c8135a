"""Session features over event time, from time-bucketed tiles inside the profile.

Windowed counts are not windowed tables. Each behavioural event (track,
page, screen, location) adds to one minute tile and one hour tile, kept in
the person's profile, so an event costs two small updates whatever the
number of windows, and the profile's one write per bundle carries them: no
window writes a changelog message of its own. A window is the sum (or
union) of the tiles it covers, computed only when something asks.

    profile["tiles"] = {"m": [[minute, events, [product...], [category...]], ...],
                        "h": [[hour, events, [product...], [category...]], ...]}

Windows end at ``now`` (event time) and are aligned to their tiles: the
15-minute window is the 15 minute tiles up to and including now's, the
24-hour window the 24 hour tiles up to and including now's. Minute tiles
are kept for the longest minute window (1 h) and hour tiles for 7 days.
Per tile at most :data:`MAX_DISTINCT` products and categories are kept, so
distinct counts are exact up to that many per tile.

Sessions split on :data:`SESSION_GAP_MS` of inactivity.
"""

from __future__ import annotations

import bisect
from typing import Any

from agents.profile import Profile, code, trait
from streams.domain import Event
from streams.reference import Reference

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
SESSION_GAP_MS = 30 * MINUTE_MS
MAX_DISTINCT = 16
# name: (tile kind, tile length, tiles in the window)
WINDOWS = {
    "15m": ("m", MINUTE_MS, 15),
    "1h": ("m", MINUTE_MS, 60),
    "24h": ("h", HOUR_MS, 24),
    "7d": ("h", HOUR_MS, 168),
}
KEEP = {"m": 60, "h": 168}  # tiles kept behind the newest, per kind
TILE_MS = {"m": MINUTE_MS, "h": HOUR_MS}
BEHAVIOUR = frozenset({"track", "page", "screen", "location"})


def add(profile: Profile, event: Event) -> None:
    """Count a behavioural event in its tiles and its session."""
    ts = event["ts"]
    props = event.get("props") or {}
    product = code(props.get("product_id"))
    category = code(props.get("category"))
    tiles = _tiles(profile)
    _add_to_tile(tiles["m"], ts // MINUTE_MS, product, category, KEEP["m"])
    _add_to_tile(tiles["h"], ts // HOUR_MS, product, category, KEEP["h"])
    _session(profile, ts)


def _add_to_tile(
    tiles: list[list[Any]], index: int, product: str | None, category: str | None, keep: int
) -> None:
    if tiles and tiles[-1][0] == index:  # the common case: the newest tile
        tile = tiles[-1]
    else:
        at = bisect.bisect_left(tiles, index, key=lambda t: t[0])
        if at < len(tiles) and tiles[at][0] == index:
            tile = tiles[at]
        else:
            tile = [index, 0, [], []]
            tiles.insert(at, tile)
            newest = tiles[-1][0]
            while tiles[0][0] <= newest - keep:
                del tiles[0]
            if tile[0] <= newest - keep:
                return  # older than anything a window reads
    tile[1] += 1
    if product is not None:
        _remember(tile[2], product)
    if category is not None:
        _remember(tile[3], category)


def _remember(seen: list[str], value: str) -> None:
    """Add ``value`` to a tile's distinct values, up to MAX_DISTINCT."""
    if value not in seen and len(seen) < MAX_DISTINCT:
        seen.append(value)


def _tiles(profile: Profile) -> dict[str, list[list[Any]]]:
    tiles = profile.get("tiles")
    if tiles is None:
        tiles = profile["tiles"] = {"m": [], "h": []}
    return tiles


def merge(target: Profile, source: Profile) -> None:
    """Fold ``source``'s tiles and session into ``target`` (identity merges)."""
    theirs = source.get("tiles")
    if theirs:
        tiles = _tiles(target)
        for kind in TILE_MS:
            mine = {tile[0]: tile for tile in tiles[kind]}
            for index, count, products, categories in theirs[kind]:
                tile = mine.setdefault(index, [index, 0, [], []])
                tile[1] += count
                for value in products:
                    _remember(tile[2], value)
                for value in categories:
                    _remember(tile[3], value)
            merged = sorted(mine.values(), key=lambda tile: tile[0])
            tiles[kind] = [t for t in merged if t[0] > merged[-1][0] - KEEP[kind]]
    if "session" in source:
        mine_s, theirs_s = target.get("session"), source["session"]
        if mine_s is None or theirs_s[1] > mine_s[1]:
            target["session"] = list(theirs_s)
        if mine_s is not None:
            target["session"][3] = max(mine_s[3], theirs_s[3])


def _session(profile: Profile, ts: int) -> None:
    """[start, last, events, sessions so far]: a gap of SESSION_GAP_MS starts a new one."""
    session = profile.get("session")
    if session is None:
        profile["session"] = [ts, ts, 1, 1]
        return
    start, last, events, count = session
    if ts - last > SESSION_GAP_MS:
        profile["session"] = [ts, ts, 1, count + 1]
    elif ts >= start - SESSION_GAP_MS:  # in this session, early or late
        session[0] = min(start, ts)
        session[1] = max(last, ts)
        session[2] = events + 1


def window(profile: Profile, name: str, now: int) -> dict[str, Any]:
    """Events, distinct products and categories in window ``name`` ending at ``now``."""
    kind, length, span = WINDOWS[name]
    newest = now // length
    events, products, categories = 0, set(), set()
    for index, count, seen_products, seen_categories in reversed(
        (profile.get("tiles") or {}).get(kind, [])
    ):
        if index > newest:
            continue
        if index <= newest - span:
            break
        events += count
        products.update(seen_products)
        categories.update(seen_categories)
    return {"events": events, "products": len(products), "categories": len(categories)}


def features(profile: Profile, now: int, reference: Reference) -> dict[str, Any]:
    """Every session feature of ``profile`` at event time ``now``."""
    prices = reference.products
    cart = profile.get("cart") or {}
    value = sum(prices[p].price * q for p, (q, _) in cart.items() if p in prices)
    _count, _total, last_order = profile.get("orders") or [0, 0.0, 0]
    start, last, events, sessions = profile.get("session") or [0, 0, 0, 0]
    visit_last = (profile.get("visit") or [None, 0, 0])[2]
    return {
        "windows": {name: window(profile, name, now) for name in WINDOWS},
        "session": {
            "active": bool(sessions) and now - last <= SESSION_GAP_MS,
            "started_at": start or None,
            "events": events,
            "count": sessions,
        },
        "cart": {"items": sum(q for q, _ in cart.values()), "value": round(value, 2)},
        "since_last_purchase_ms": now - last_order if last_order else None,
        "since_last_visit_ms": now - visit_last if visit_last else None,
        "favorite_category": trait(profile, "favorite_category"),
    }
