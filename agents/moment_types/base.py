"""What a moment type declares, once: its rule, its context, prompt and template.

A moment type is one module of this package that builds a
:class:`MomentType`; the package's ``__init__`` lists them, and nothing else
knows their names. Its parts, in the order a moment meets them:

- ``config``: its section of the rules file (``rules.<name>``), with at
  least ``enabled`` and ``holdout_pct``;
- a rule: ``detect`` (judged on the profile after every event), or a
  ``timer`` (a wait that starts when the profile changes, and a judgement
  when it runs out);
- ``context``: the slice of the profile the prompt gets (models/context.py),
  from the profile, the moment, the reference data, its rules and the
  product vectors (None without them; agents/taste.py);
- ``prompt``: the versioned few-shot prompt (models/prompts.py);
- ``template``: the message sent when the model's answer is rejected
  (the guardrails, models/guardrails.py, are the same for every type);
- ``max_age_ms``: how long after the moment's event time its offer may
  still go out. Later, the moment is recorded as suppressed ``stale`` and no
  offer is sent (a "welcome in" hours after the visit helps nobody). A
  timed type's moment fires up to ``KAIROS_ALLOWED_LATENESS_S`` plus
  ``KAIROS_TIMER_IDLE_S`` after its due time (2 h at most), so its max age
  is longer than that.
- ``channels``: the channels its offer may go by, in order of preference
  (streams/domain/offer.py ``CHANNELS``); the person's consent and
  history choose among them (agents/channels.py);
- ``redeem``: how the offer is used ("Complete your order"), the start of
  the terms sentence kairos adds to every message (models/prompts.py
  ``terms_sentence``); the model never writes terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.profile import Profile
from models.context import ContextSlice
from models.guardrails import Draft
from models.prompts import Prompt
from streams.domain import Moment
from streams.reference import Reference

# The most a timer can fire after its due time: KAIROS_ALLOWED_LATENESS_S and
# KAIROS_TIMER_IDLE_S at their largest (an hour each).
TIMER_SLACK_MS = 2 * 3_600_000


def send_within_limit(max_age_ms: int) -> int:
    """The largest send window a timed type with ``max_age_ms`` may have, in ms."""
    return max_age_ms - TIMER_SLACK_MS - 60_000  # a minute for the tick


class RuleConfig(BaseModel):
    """The settings every moment type has in the rules file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    holdout_pct: float = Field(default=10, ge=0, le=100)


@dataclass(frozen=True)
class Timer:
    """A moment that fires when nothing happens for a while.

    After an event of a kind in ``watches``, if ``started_at`` (when the wait
    began) moved, a timer is set ``wait_ms`` later. When it runs out,
    ``fire`` judges the profile at that time: a moment, or None; or, with a
    time in the second place, try again then (the wait went on).
    """

    watches: frozenset[str]
    started_at: Callable[[Profile], int | None]
    wait_ms: Callable[[Any], int]
    fire: Callable[[Profile, int, Any, tuple[str, ...]], tuple[Moment | None, int | None]]
    send_within_ms: Callable[[Any], int] | None = None


@dataclass(frozen=True)
class MomentType:
    name: str
    config: type[RuleConfig]
    context: Callable[[Profile, Moment, Reference, Any, Any], ContextSlice]
    prompt: Callable[[ContextSlice], Prompt]
    template: Callable[[ContextSlice, int], Draft]
    max_age_ms: int
    detect: Callable[[Profile, Any, tuple[str, ...]], Moment | None] | None = None
    timer: Timer | None = None
    redeem: str = "Show this offer at the till"
    channels: tuple[str, ...] = ("push",)
