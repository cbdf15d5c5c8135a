"""Next best channel: consent, the prior, a person's history, and the offer it reaches."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from agents.attribution import join
from agents.channels import (
    CONSENT_TRAITS,
    HISTORY,
    NO_CHANNEL,
    ONLY,
    PRIOR,
    choose_channel,
    consented,
)
from agents.moment_types import MOMENT_TYPES
from agents.moments import moment_id, offer_id
from agents.offers import OfferWriter, write_offer
from agents.profile import add_channel_counts, new_profile
from agents.rules import in_holdout
from models.client import LLMClient
from streams.domain import Profile
from streams.domain.offer import CHANNELS
from streams.metrics import Metrics
from streams.reference import ReferenceData, load_reference
from streams.settings import Settings
from tests.support.harness import T0, Harness, policy

FLATIRON = load_reference().stores["s-flatiron"]
MINUTE = 60_000


def person(**consent: bool) -> Profile:
    profile = new_profile("u1")
    for channel, given in consent.items():
        profile["traits"][CONSENT_TRAITS[channel]] = [given, T0]
    return profile


def test_every_moment_type_declares_channels_of_the_declared_set() -> None:
    for kind in MOMENT_TYPES.values():
        assert kind.channels and set(kind.channels) <= set(CHANNELS), kind.name
    assert MOMENT_TYPES["store_entry"].channels == ("push", "sms")  # something seen at once
    assert set(MOMENT_TYPES["win_back"].channels) == {"email", "push"}


def test_without_consent_traits_a_person_gets_push_as_before() -> None:
    assert consented(new_profile("u1")) == ("push",)
    for moment_type in ("store_entry", "cart_abandoned", "win_back"):
        choice = choose_channel(new_profile("u1"), moment_type)
        assert (choice.channel, choice.reason) == ("push", ONLY)


def test_with_no_history_the_prior_chooses_and_ranks_push_first() -> None:
    everyone = person(push=True, email=True, sms=True)
    choice = choose_channel(everyone, "cart_abandoned")
    assert (choice.channel, choice.reason) == ("push", PRIOR)
    assert choice.scores["push"] > choice.scores["email"]
    assert choice.channel == choose_channel(everyone, "store_entry").channel == "push"
    # Over every channel, for the recommendations: each allowed one is scored.
    assert set(choose_channel(everyone).scores) == set(CHANNELS)


def test_a_history_of_ignored_pushes_and_redeemed_emails_moves_to_email() -> None:
    profile = person(push=True, email=True)
    add_channel_counts(profile, "push", [12, 1, 0])
    add_channel_counts(profile, "email", [4, 3, 2])
    choice = choose_channel(profile, "cart_abandoned")
    assert (choice.channel, choice.reason) == ("email", HISTORY)
    assert choice.scores["email"] > choice.scores["push"]
    # One lucky redeem is not a habit: a single email opened and redeemed...
    lucky = person(push=True, email=True)
    add_channel_counts(lucky, "email", [1, 1, 1])
    # ...does not outweigh the prior.
    assert choose_channel(lucky, "cart_abandoned").channel == "push"


def test_the_best_channel_without_consent_is_not_used() -> None:
    profile = person(push=True, email=False)
    add_channel_counts(profile, "email", [4, 3, 2])  # from before they withdrew it
    add_channel_counts(profile, "push", [12, 1, 0])
    choice = choose_channel(profile, "cart_abandoned")
    assert (choice.channel, choice.reason) == ("push", ONLY)
    assert set(choice.scores) == {"push"}
    # A store entry cannot go by email at all, whatever the history says.
    assert choose_channel(person(push=False, email=True), "store_entry").channel is None


def test_consent_is_only_true_or_one() -> None:
    for value, allowed in ((True, True), (1, True), ("yes", False), (False, False), (0, False)):
        profile = new_profile("u1")
        profile["traits"]["sms_opt_in"] = [value, T0]
        assert ("sms" in consented(profile)) == allowed, value


def test_no_consent_at_all_gets_no_channel() -> None:
    choice = choose_channel(person(push=False), "cart_abandoned")
    assert (choice.channel, choice.reason, choice.scores) == (None, NO_CHANNEL, {})


def track(user: str, name: str, ts: int, n: int, **props: Any) -> tuple[str, dict[str, Any]]:
    return "clickstream", {"type": "track", "event": name, "userId": user, "timestamp": ts,
                           "messageId": f"{user}-{n}", "properties": props}  # fmt: skip


def visit(user: str, at: int, traits: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("crm", {"type": "traits", "userId": user, "traits": traits, "timestamp": at - 2 * MINUTE,
                 "messageId": f"{user}-t"}),
        track(user, "Product Viewed", at - MINUTE, 1, product_id="p-101", category="running"),
        ("location", {"type": "location", "userId": user, "lat": FLATIRON.lat,
                      "lon": FLATIRON.lon, "messageId": f"{user}-ping", "timestamp": at}),
    ]  # fmt: skip


def reachable(count: int) -> list[str]:
    """People outside the store-entry holdout of the rules in force."""
    pct = policy().rules.holdout_pct("store_entry")
    people = (f"c{n}" for n in range(100))
    return [u for u in people if not in_holdout(u, "store_entry", pct)][:count]


def test_a_moment_for_a_person_who_consented_to_nothing_is_suppressed_no_channel() -> None:
    [user] = reachable(1)
    h = Harness()
    h.send(*visit(user, T0, {"push_opt_in": False, "sms_opt_in": False, "email_opt_in": True}))
    [moment] = h.moments
    assert moment["suppressed"] == NO_CHANNEL and "channel" not in moment
    profile = h.profile(user)
    assert profile["offers"] == [] and "store_entry" not in profile["moments"]  # no cooldown


def test_a_moment_carries_its_channel_and_feedback_counts_on_it() -> None:
    [user] = reachable(1)
    h = Harness()
    h.send(*visit(user, T0, {"push_opt_in": False, "sms_opt_in": True}))
    [moment] = h.moments
    assert (moment["channel"], moment["channel_reason"]) == ("sms", ONLY)
    offer = offer_id(moment_id("store_entry", user, "s-flatiron", f"{user}-ping"))
    assert h.profile(user)["offers"][0][5] == "sms"
    for n, action in enumerate(("delivered", "opened", "opened", "clicked", "redeemed")):
        h.send(("feedback", {"type": "feedback", "userId": user, "offer_id": offer,
                             "action": action, "messageId": f"f{n}",
                             "timestamp": T0 + (n + 1) * MINUTE}))  # fmt: skip
    # Each action once per offer; the second open is not counted again.
    assert h.profile(user)["channels"] == {"sms": [1, 1, 1]}
    # Feedback naming the channel it really went by counts there (a fallback to push).
    h.send(("feedback", {"type": "feedback", "userId": user, "offer_id": offer,
                         "action": "dismissed", "channel": "push", "messageId": "f9",
                         "timestamp": T0 + 9 * MINUTE}))  # fmt: skip
    assert h.profile(user)["channels"] == {"sms": [1, 1, 1]}  # dismissed is not counted


def test_feedback_for_an_offer_remembered_before_channels_counts_as_push() -> None:
    profile = new_profile("u1")
    profile["offers"].append(["o-1", "store_entry", T0, "a", "offer"])  # as version 3 kept it
    event = {"kind": "feedback", "user": "u1", "ts": T0 + MINUTE, "name": "opened",
             "props": {"offer_id": "o-1"}}  # fmt: skip
    [record], _ = join(profile, event, 86_400_000)  # type: ignore[arg-type]
    assert record["outcome"] == "opened" and profile["channels"] == {"push": [0, 1, 0]}
    event = {**event, "name": "delivered", "props": {"offer_id": "o-1", "channel": "email"}}
    join(profile, event, 86_400_000)  # type: ignore[arg-type]
    assert profile["channels"] == {"push": [0, 1, 0], "email": [1, 0, 0]}


def offer_for(moment: dict[str, Any]) -> tuple[dict[str, Any], Metrics]:
    """The offer the offers stage writes for ``moment`` (the model down: the template)."""
    settings, metrics = Settings(llm_retries=0), Metrics(CollectorRegistry())
    writer = OfferWriter(settings, policy().rules, ReferenceData(None), metrics)
    down = httpx.MockTransport(lambda _request: httpx.Response(503))
    client = LLMClient("http://llm/v1", "m", retries=0, metrics=metrics, transport=down)

    async def write() -> Any:
        try:
            return await write_offer(writer, client, moment)  # type: ignore[arg-type]
        finally:
            await client.aclose()

    return asyncio.run(write()), metrics


def test_the_offer_goes_by_the_moments_channel_and_says_why() -> None:
    [user] = reachable(1)
    h = Harness()
    h.send(*visit(user, T0, {"push_opt_in": False, "sms_opt_in": True}))
    [moment] = h.moments
    moment = {**moment, "ingested_at": T0, "detected_at": T0}  # as output.py stamps it
    offer, metrics = offer_for(moment)
    assert (offer["channel"], offer["channel_reason"]) == ("sms", ONLY)
    counted = metrics.offer_channels.labels("store_entry", "sms", ONLY)
    assert counted._value.get() == 1
    # A moment recorded before moments had a channel goes by push, as it did then.
    legacy = {k: v for k, v in moment.items() if k not in ("channel", "channel_reason")}
    offer, _metrics = offer_for(legacy)
    assert (offer["channel"], offer["channel_reason"]) == ("push", PRIOR)
