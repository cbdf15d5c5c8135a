"""A bundle's fold that no event can stop or leave half-applied.

An exception inside the fold is a bug, met on one event. The event goes to
the dead-letter topic with the reason, and the rest of the bundle is folded
again without it, from the profiles as they were loaded: the exception may
have struck after the event changed its profile (its tiles counted, its id
remembered), and a profile must hold all of an event or none of it. The
happy path pays nothing; a bundle with a failing event is folded twice,
once more for each event that fails only once others are gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agents.fold import Fold
from streams.domain import Event

log = logging.getLogger(__name__)


def fold_all(new_fold: Callable[[], Fold], events: list[Event]) -> Fold:
    """``events`` applied to a fold from ``new_fold()``, but those that raise,
    which are in its dead letters with the exception as their reason."""
    failed: dict[int, str] = {}
    while True:
        fold, again = new_fold(), False
        for n, event in enumerate(events):
            if n in failed:
                continue
            try:
                fold.apply(event)
            except Exception as exc:  # a bug must not lose the event, nor stop the worker
                log.exception("context update failed for event %s", event.get("id"))
                failed[n], again = f"state update failed: {exc!r}", True
        if not again:
            break
    fold.dead += [(events[n], "internal_error", reason) for n, reason in sorted(failed.items())]
    return fold
