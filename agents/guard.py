"""A bundle's fold that no event can stop or leave half-applied.

An exception inside the fold is a bug, met on one event. The event goes to
the dead-letter topic with the reason, and the rest of the bundle is folded
again without it, from the profiles as they were loaded: the exception may
have struck after the event changed its profile (its tiles counted, its id
remembered), and a profile must hold all of an event or none of it.

The same holds for a profile the event leaves unencodable (a cart quantity
past the 64 bits orjson writes): the table writes are encoded once, after
the fold, and if that fails the bundle is folded again encoding the
person's profile after each event, to find the event that did it.

The happy path pays nothing; a bundle with failing events is folded once
more for the most failures any one person has in it, and once more to
encode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agents.fold import Fold
from streams.codecs import dumps
from streams.domain import Event

log = logging.getLogger(__name__)

Changes = list[tuple[bytes, bytes | None]]


def fold_all(new_fold: Callable[[], Fold], events: list[Event]) -> tuple[Fold, Changes]:
    """``events`` applied to a fold from ``new_fold()``, but those that raise,
    which are in its dead letters with the exception as their reason; and the
    fold's table writes."""
    failed: dict[int, str] = {}
    encoding = False  # each profile after each event, to find one that breaks it
    while True:
        fold = new_fold()
        again = _apply(fold, events, failed, encoding)
        if again:
            continue
        try:
            changes = fold.changes()
        except Exception:
            if encoding:  # every profile encoded after each event: not an event's doing
                raise
            encoding = True
            continue
        fold.dead += [(events[n], "internal_error", reason) for n, reason in sorted(failed.items())]
        return fold, changes


def _apply(fold: Fold, events: list[Event], failed: dict[int, str], encoding: bool) -> bool:
    """Apply the events not yet failed; True if one failed now. After a
    failure the person's profile may hold part of that event, so their later
    events wait for the next pass; other people's go on."""
    broken: set[str] = set()
    for n, event in enumerate(events):
        if n in failed or event["user"] in broken:
            continue
        try:
            fold.apply(event)
            if encoding:
                dumps(fold.profiles[event["user"]])
        except Exception as exc:  # a bug must not lose the event, nor stop the worker
            log.exception("context update failed for event %s", event.get("id"))
            failed[n] = f"state update failed: {exc!r}"
            broken.add(event["user"])
    return bool(broken)
