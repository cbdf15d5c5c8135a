"""Moment rules' settings and policy, declared in a YAML file.

The file (streams/data/rules.yaml, or ``KAIROS_RULES_FILE``) sets each
rule's conditions and the policy over all of them: quiet hours, a cap on
offers per person per day, the traits that opt a person out, and each
rule's holdout share. A moment that fires but must not lead to an offer is
still recorded, marked ``suppressed`` with the reason: ``holdout`` (the
control group; its cooldown runs as if an offer had gone, so both groups
meet the same moments), or ``quiet_hours`` and ``frequency_cap`` (nothing
was sent, so the cooldown does not start).
A bad file stops start-up with a message naming the file and the field.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, time
from importlib import resources
from pathlib import Path
from typing import Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from agents.attribution import OFFER, remembered
from agents.moment_types import MOMENT_TYPES, RuleConfig
from streams.domain import Moment, Profile
from streams.errors import SettingsError
from streams.yamlfile import load_model

# Package data of ``streams`` (pyproject.toml ships it in the wheel), found
# where that package is installed rather than beside this checkout.
DEFAULT_FILE = Path(str(resources.files("streams").joinpath("data", "rules.yaml")))
DAY_MS = 86_400_000


class RulesError(SettingsError):
    """The rules file is missing or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QuietHours(_Strict):
    start: time
    end: time

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: time) -> time:
        # Hours of the file's own ``timezone``: an offset here could not be
        # compared with the local times it is judged against.
        if value.tzinfo is not None:
            raise ValueError("a time of day without a UTC offset (the file's timezone applies)")
        return value

    def covers(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end  # across midnight


# Each moment type's section, declared by the type (agents/moment_types/).
RuleSet = create_model(
    "RuleSet",
    __base__=_Strict,
    **{name: (kind.config, kind.config()) for name, kind in MOMENT_TYPES.items()},  # type: ignore[call-overload]
)


class Rules(_Strict):
    version: Literal[1] = 1
    timezone: str = "UTC"
    quiet_hours: QuietHours | None = None
    max_offers_per_day: int | None = Field(default=None, ge=1)
    opt_out_traits: tuple[str, ...] = ("marketing_opt_out", "unsubscribed")
    rules: RuleSet = RuleSet()  # type: ignore[valid-type]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def rule(self, moment_type: str) -> RuleConfig:
        """The section of ``moment_type``, a key of :data:`MOMENT_TYPES`."""
        return cast(RuleConfig, getattr(self.rules, moment_type))

    def holdout_pct(self, moment_type: str) -> float:
        rule = getattr(self.rules, moment_type, None)
        return rule.holdout_pct if rule is not None else 0.0


def load_rules(path: Path | None = None) -> Rules:
    return load_model(path or DEFAULT_FILE, Rules, "rules file", RulesError)


def in_holdout(user: str, moment_type: str, pct: float) -> bool:
    """Fixed per person and moment type: the same people are always the control."""
    digest = hashlib.sha256(f"holdout|{moment_type}|{user}".encode()).digest()
    return int.from_bytes(digest[:4]) % 10_000 < pct * 100


def suppression(profile: Profile, moment: Moment, rules: Rules) -> str | None:
    """Why this moment must not lead to an offer, or None. Quiet hours are judged
    at the time its offer goes out: a timed moment's ``send_at``."""
    if rules.quiet_hours is not None:
        at = datetime.fromtimestamp(moment.get("send_at", moment["event_ts"]) / 1000, UTC)
        if rules.quiet_hours.covers(at.astimezone(ZoneInfo(rules.timezone)).time()):
            return "quiet_hours"
    if rules.max_offers_per_day is not None:
        since = moment["event_ts"] - DAY_MS
        sent = sum(1 for _offer, _type, ts, _variant, group in remembered(profile)
                   if group == OFFER and since < ts <= moment["event_ts"])  # fmt: skip
        if sent >= rules.max_offers_per_day:
            return "frequency_cap"
    if in_holdout(profile["user"], moment["type"], rules.holdout_pct(moment["type"])):
        return "holdout"
    return None
