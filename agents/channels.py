"""Next best channel: which way an offer goes to a person, and why.

The channels are :data:`streams.domain.offer.CHANNELS` (push, email, sms).
Each moment type declares the ones that suit it, in its order of preference
(``channels`` in agents/moment_types/: a store entry needs something the
person sees at once). The person's consent narrows them; their history with
each channel chooses among the rest.

Consent is a trait per channel (:data:`CONSENT_TRAITS`): true allows it,
any other value refuses it. Without the trait, push is allowed and email and sms are
not: an app can only push to a device whose owner granted it the
permission, and every offer went by push before channels were chosen, while
texts and marketing email need the person's prior consent in most places
(TCPA in the US, ePrivacy and GDPR in the EU). A person left with none of
the moment's channels gets no offer: the moment is recorded suppressed
``no_channel``. The rules file's opt-out traits still stop every moment
before it gets here.

History: ``profile["channels"]`` holds [delivered, opened, redeemed] per
channel, counted when feedback joins an offer (agents/attribution.py),
once per offer and action, on the channel the feedback names, else on the
one the offer went by (agents/profile.py halves them past a bound).

The score of a channel is the person's expected redeem rate there:
P(opened | delivered) x P(redeemed | opened), each the mean of a Beta
posterior, (a + hits) / (a + b + trials), from the prior in :data:`PRIORS`.
The priors are constants, not settings: they decide what a person without
history gets, and they weigh as much as :data:`PRIOR_WEIGHT` deliveries
(and as many opens), so a person's own history outweighs them after a
score of offers, while one lucky redeem does not move a channel. Push's is the highest, so a person
with no history keeps getting push where push is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.moment_types import MOMENT_TYPES
from agents.profile import Profile, add_channel_counts, trait
from streams.domain import Event
from streams.domain.offer import CHANNELS

CONSENT_TRAITS = {channel: f"{channel}_opt_in" for channel in CHANNELS}
# Allowed without a consent trait (see above).
ALLOWED_BY_DEFAULT = frozenset({"push"})
# Offers went by push before they had a channel of their own.
LEGACY_CHANNEL = "push"
# The feedback actions counted, in the order of the counts.
COUNTED = ("delivered", "opened", "redeemed")
PRIOR_WEIGHT = 20


@dataclass(frozen=True)
class Prior:
    """Prior open rate (per delivered offer) and redeem rate (per opened one)."""

    opened: float
    redeemed: float


# Ranked push > sms > email for a person without history: push is what every
# person got so far; a text is opened more than an email, and costs more.
PRIORS = {
    "push": Prior(opened=0.30, redeemed=0.20),
    "sms": Prior(opened=0.30, redeemed=0.15),
    "email": Prior(opened=0.20, redeemed=0.20),
}
ONLY, PRIOR, HISTORY = "only", "prior", "history"
NO_CHANNEL = "no_channel"


@dataclass(frozen=True)
class ChannelChoice:
    """The channel (None: none allowed), why (only, prior, history, or
    no_channel), and the score of each allowed channel."""

    channel: str | None
    reason: str
    scores: dict[str, float] = field(default_factory=dict)


def consented(profile: Profile, channels: tuple[str, ...] = CHANNELS) -> tuple[str, ...]:
    """The ``channels`` the person's consent traits allow, in the order given."""
    allowed = []
    for channel in channels:
        given = trait(profile, CONSENT_TRAITS[channel])
        # Anything but true (or 1) that is set is no consent: "yes" might be a "no".
        if (given is None and channel in ALLOWED_BY_DEFAULT) or given is True or given == 1:
            allowed.append(channel)
    return tuple(allowed)


def score(profile: Profile, channel: str) -> float:
    """The person's expected redeem rate on ``channel``."""
    prior = PRIORS[channel]
    delivered, opened, redeemed = profile.get("channels", {}).get(channel, [0, 0, 0])
    opened, redeemed = max(opened, redeemed), redeemed  # a redeem was opened
    delivered = max(delivered, opened)  # feedback need not report every delivery
    open_rate = (prior.opened * PRIOR_WEIGHT + opened) / (PRIOR_WEIGHT + delivered)
    redeem_rate = (prior.redeemed * PRIOR_WEIGHT + redeemed) / (PRIOR_WEIGHT + opened)
    return open_rate * redeem_rate


def choose_channel(profile: Profile, moment_type: str | None = None) -> ChannelChoice:
    """The channel to reach the person by for a moment of ``moment_type`` (None:
    any channel), of those it declares that their consent allows."""
    declared = MOMENT_TYPES[moment_type].channels if moment_type else CHANNELS
    allowed = consented(profile, declared)
    if not allowed:
        return ChannelChoice(None, NO_CHANNEL)
    scores = {channel: round(score(profile, channel), 6) for channel in allowed}
    best = max(allowed, key=lambda channel: (scores[channel], -allowed.index(channel)))
    if len(allowed) == 1:
        return ChannelChoice(best, ONLY, scores)
    history = profile.get("channels", {})
    known = any(any(history.get(channel, ())) for channel in allowed)
    return ChannelChoice(best, HISTORY if known else PRIOR, scores)


def offer_channel(profile: Profile, offer_id: str) -> str:
    """The channel a remembered offer went by (push, for one remembered before
    offers had a channel)."""
    for held in profile["offers"]:
        if held[0] == offer_id:
            return held[5] if len(held) > 5 and held[5] in CHANNELS else LEGACY_CHANNEL
    return LEGACY_CHANNEL


def count_feedback(profile: Profile, offer_id: str, event: Event) -> None:
    """Count a feedback action joined to its offer for the first time."""
    if event.get("name") not in COUNTED:
        return
    named = (event.get("props") or {}).get("channel")
    channel = named if named in CHANNELS else offer_channel(profile, offer_id)
    counts = [int(action == event["name"]) for action in COUNTED]
    add_channel_counts(profile, channel, counts)
