"""A normalized event, as ingest files it and the fold reads it."""

from __future__ import annotations

from typing import Any, TypedDict

from streams.domain.profile import Profile


class _Required(TypedDict):
    kind: str  # track, page, identify, location, order, ... (docs/EVENTS.md); merge, absorb
    user: str  # the profile id it is filed under
    ts: int  # event time, epoch ms


# The functional form, because an absorb names the id it came from in "from".
_Optional = TypedDict(
    "_Optional",
    {
        "v": int,
        "id": str,
        "at": int,  # when ingest took it, epoch ms
        "ahead_ms": int,  # stamped this far after "at": taken at "at" instead
        "name": str,  # a track call's event name
        "props": dict[str, Any],
        "traits": dict[str, Any],
        "anon": str | None,  # the anonymousId beside a userId
        "previous": str | None,  # an alias call's previous id
        "into": str,  # a merge: the id this one is merged into
        "from": str,  # an absorb: the id whose profile it carries
        "profile": Profile,  # an absorb: that profile
        "hops": int,  # times forwarded to a merged-into id
        "timer": bool,  # stands for a timer's firing, not an event
        "tz": str,  # a Segment call's context.timezone, if it named one
    },
    total=False,
)


class Event(_Required, _Optional):
    """A normalized event; which optional keys it has depends on ``kind``."""
