"""``kairos dataset export``: each moment, its point-in-time features and what followed.

One JSON line per moment of kairos.internal.moments (each once, oldest
first): the moment record as the context agent wrote it, with the profile
snapshot and the features computed at the moment's event time (so nothing
the person did later leaks in), plus

- ``group``: ``offer`` (an offer went out), ``holdout`` (the rule's control
  group), or null (quiet hours or the daily cap held it back);
- ``outcomes``: each outcome joined to the moment on kairos.outcomes
  (agents/attribution.py: ``delivered``, ``opened``, ``clicked``,
  ``redeemed``, ``dismissed``, ``replied``, ``converted``), with the event time it
  happened, once each.

`kairos eval --from-file` reads these lines back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, cast

import orjson

from agents.attribution import group_of
from streams.domain import Moment
from streams.errors import CommandError
from streams.runtime.topics import internal_name
from streams.settings import Settings
from streams.tools.report import read_all


def rows(
    moments: Iterable[dict[str, Any]], outcomes: Iterable[dict[str, Any]],
    moment_type: str | None = None, with_profile: bool = True,
) -> list[dict[str, Any]]:  # fmt: skip
    """The export's lines: moments once each by id, oldest first, outcomes joined."""
    joined: dict[str, dict[str, int]] = {}
    for outcome in outcomes:  # an outcome sent twice (at-least-once) keeps its first time
        moment_id, name, ts = outcome.get("moment_id"), outcome.get("outcome"), outcome.get("ts")
        if isinstance(moment_id, str) and isinstance(name, str) and isinstance(ts, int):
            seen = joined.setdefault(moment_id, {})
            seen[name] = min(ts, seen.get(name, ts))
    unique = {m["id"]: m for m in moments if isinstance(m.get("id"), str)}
    out = []
    for moment in sorted(unique.values(), key=lambda m: (m.get("event_ts") or 0, m["id"])):
        if moment_type is not None and moment.get("type") != moment_type:
            continue
        line = {k: v for k, v in moment.items() if with_profile or k != "profile"}
        line["group"] = group_of(cast(Moment, moment))
        line["outcomes"] = joined.get(moment["id"], {})
        out.append(line)
    return out


async def export(
    settings: Settings, moment_type: str | None = None, with_profile: bool = True
) -> list[dict[str, Any]]:
    moments = await read_all(settings, internal_name(settings, "moments"))
    outcomes = await read_all(settings, settings.topics.outcomes)
    return rows(moments, outcomes, moment_type, with_profile)


def write(lines: list[dict[str, Any]], out: Path | None, stdout: IO[bytes]) -> None:
    """To ``out`` (written whole, then renamed, so a failure leaves no half
    file), or to ``stdout``."""
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    if out is None:
        stdout.write(data)
        stdout.flush()
        return
    partial = out.with_name(out.name + ".partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise CommandError(f"--out {out}: {exc.strerror or exc}") from None
