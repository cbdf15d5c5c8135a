"""Profile API: read-only views of a person's state, over the worker's web server.

In the spirit of Segment's Profiles API, one resource per person and view:

    GET /v1/profiles/{id}/traits       traits, with the event time of each
    GET /v1/profiles/{id}/events       recent events, newest first
    GET /v1/profiles/{id}/identities   the canonical id and the ids merged into it
    GET /v1/profiles/{id}/features     session features; ?at=<ms> (event time), default now
    GET /v1/profiles/{id}/offers       offers made, their outcomes, consent
    GET /v1/profiles/{id}/replies      what the customer wrote back, sanitised, and the
                                       preferences and exclusions derived from it
    GET /v1/profiles/{id}/recommendations   the products for them next (?k=<1..20>),
                                       the channel and the next time to reach them

A profile lives in one partition of the profiles table, and each partition
on one worker. Any worker answers: a request for a key another worker owns
is forwarded once to that worker (found by the partition assignment, at the
URL each worker advertises, ``KAIROS_WEB_URL``) and its answer returned as
it is. While partitions move, the answer is 503 with Retry-After. An id
merged into another answers 307 with the canonical id's URL.

With ``KAIROS_API_TOKEN`` set, every request needs it, as a bearer token or
as the user name of basic auth (as Segment's API takes it); without it,
401. /metrics and /ready stay open for scrapers and probes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import faust
from faust.web import Request, Response
from yarl import URL

from agents.attribution import HOLDOUT, OFFER, remembered
from agents.channels import choose_channel
from agents.context import ContextStage
from agents.features import features
from agents.freshness import as_of
from agents.moments import moment_of, opted_out
from agents.profile import MAX_RECENT, Profile, recent_events
from agents.recommend import DEFAULT_K, MAX_K, recommend
from agents.replies import replies_view as replies_of
from agents.runtime import Runtime
from agents.sendtime import Quiet, next_send_time
from agents.taste import latest as latest_taste
from streams.codecs import dumps, now_ms
from streams.reference import Reference
from streams.vectors import ProductVectors

PREFIX = "/v1/profiles"


@dataclass(frozen=True)
class Asked:
    """What a view needs besides the profile: the time asked about, the
    reference data and consent traits in force, how many recommendations,
    and the product vectors (None: none loaded)."""

    at: int
    reference: Reference
    opt_out_traits: tuple[str, ...]
    k: int = DEFAULT_K
    vectors: ProductVectors | None = None
    quiet: tuple[Quiet, ...] = ()  # the quiet hours in force (agents/sendtime.py)


def traits_view(profile: Profile, asked: Asked) -> dict[str, Any]:
    held = profile["traits"]
    return {
        "traits": {name: value for name, (value, _ts) in held.items()},
        "updated_at": {name: ts for name, (_value, ts) in held.items()},
    }


def events_view(profile: Profile, asked: Asked) -> dict[str, Any]:
    return {"events": recent_events(profile), "limit": MAX_RECENT}


def identities_view(profile: Profile, asked: Asked) -> dict[str, Any]:
    return {"identities": [profile["user"], *profile["ids"]]}


def features_view(profile: Profile, asked: Asked) -> dict[str, Any]:
    return {
        "at": asked.at,
        "features": features(profile, asked.at, asked.reference),
        # Per feature family, the event time of the latest event it holds.
        "as_of": as_of(profile),
    }


def offers_view(profile: Profile, asked: Asked) -> dict[str, Any]:
    outcomes = profile["outcomes"]
    held = list(reversed(list(remembered(profile))))
    offers = [
        {"offer_id": offer, "moment": moment, "offered_at": ts, "variant": variant,
         "outcomes": outcomes.get(offer, {})}
        for offer, moment, ts, variant, group in held
        if group == OFFER
    ]  # fmt: skip
    held_out = [
        {"moment_id": moment_of(offer), "moment": moment, "at": ts,
         "outcomes": outcomes.get(offer, {})}
        for offer, moment, ts, _variant, group in held
        if group == HOLDOUT
    ]  # fmt: skip
    made = {offer for offer, *_rest in held}
    return {
        "offers": offers,
        "held_out": held_out,  # moments of the rules' control groups: no offer was sent
        # Feedback for offers older than the ones remembered.
        "other_outcomes": {offer: seen for offer, seen in outcomes.items() if offer not in made},
        "last_moment": profile["moments"],
        "consent": {"opted_out": opted_out(profile, asked.opt_out_traits)},
    }


def replies_view(profile: Profile, asked: Asked) -> dict[str, Any]:
    return replies_of(profile)


def recommendations_view(profile: Profile, asked: Asked) -> dict[str, Any]:
    channel = choose_channel(profile)  # of every channel, not one moment type's
    return {
        "k": asked.k,
        "recommendations": recommend(profile, asked.reference, asked.vectors, asked.k),
        "taste_as_of": latest_taste(profile),  # event time; None: no taste yet
        "channel": {"channel": channel.channel, "reason": channel.reason, "scores": channel.scores},
        # The person's best time in the next day, out of quiet hours (None: all quiet).
        "next_send_time": next_send_time(profile, asked.at, quiet=asked.quiet),
    }


VIEWS: dict[str, Callable[[Profile, Asked], dict[str, Any]]] = {
    "traits": traits_view,
    "events": events_view,
    "identities": identities_view,
    "features": features_view,
    "offers": offers_view,
    "replies": replies_view,
    "recommendations": recommendations_view,
}


def authorized(request: Request, token: str | None) -> bool:
    """The request carries ``token`` as a bearer token or basic-auth user name."""
    if token is None:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            credentials = base64.b64decode(credentials, validate=True).decode().split(":", 1)[0]
        except (binascii.Error, UnicodeDecodeError):
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


FORWARDED = "X-Kairos-Forwarded"
PASSED_HEADERS = frozenset({"Location", "Retry-After", "WWW-Authenticate"})


def owner_of(rt: Runtime, profile_id: str) -> URL | None:
    """The worker that holds the person's partition, from the group's assignment.

    The partition is kairos's own (streams/keys.py), so this needs no
    producer metadata for the changelog topic, which a worker that has
    written nothing since it started does not have. None mid-rebalance.
    """
    topic = rt.profiles.changelog_topic.get_topic_name()
    partition = rt.partition_for(profile_id)
    for host, assigned in rt.app.assignor.table_metadata(topic).items():
        if partition in assigned.get(topic, ()):
            return URL(host)
    return None


def _same_worker(a: URL, b: URL) -> bool:
    return (a.host, a.port) == (b.host, b.port)


class ProfileView(faust.web.View):
    """The views of one person; bound to a worker's stages by :func:`install`."""

    rt: ClassVar[Runtime]
    context: ClassVar[ContextStage]

    async def get(self, request: Request, profile_id: str, view: str) -> Response:
        settings = self.rt.settings
        token = settings.api_token.get_secret_value() if settings.api_token else None
        if not authorized(request, token):
            return self._answer(
                view, "unauthorized", 401, {"error": "a valid API token is required"},
                {"WWW-Authenticate": 'Bearer realm="kairos"'},
            )  # fmt: skip
        if view not in VIEWS:
            return self._answer("unknown", "not_found", 404,
                                {"error": f"no view {view!r}; one of {sorted(VIEWS)}"})  # fmt: skip
        at, k = request.query.get("at", ""), request.query.get("k", str(DEFAULT_K))
        if at and not at.isdigit():
            return self._answer(view, "bad_request", 400,
                                {"error": "'at' must be a time in epoch milliseconds"})  # fmt: skip
        if not (k.isdigit() and 1 <= int(k) <= MAX_K):
            wrong = {"error": f"'k' must be a whole number from 1 to {MAX_K}"}
            return self._answer(view, "bad_request", 400, wrong)
        owner = owner_of(self.rt, profile_id)
        here = owner is not None and _same_worker(owner, self.rt.app.conf.canonical_url)
        if owner is None or (not here and request.headers.get(FORWARDED)):
            # Mid-rebalance: no owner yet, or the owner we forwarded to has moved on.
            busy = {"error": "partitions are being assigned; retry"}
            return self._answer(view, "unavailable", 503, busy, {"Retry-After": "1"})
        if not here:
            return await self._forward(request, owner, view)
        asked = Asked(int(at) if at else now_ms(), self.rt.reference.current,
                      self.rt.rules.opt_out_traits, int(k), self.rt.reference.vectors,
                      self.context.policy.send_quiet)  # fmt: skip
        return self._serve(profile_id, view, asked, request.query_string)

    def _serve(self, profile_id: str, view: str, asked: Asked, query: str) -> Response:
        profile = self.context.loader(self.rt.partition_for(profile_id))(profile_id)
        if profile is None:
            return self._answer(view, "not_found", 404, {"error": f"no profile for {profile_id!r}"})
        into = profile.get("merged_into")
        if into is not None:
            location = f"{PREFIX}/{into}/{view}" + (f"?{query}" if query else "")
            return self._answer(view, "moved", 307, {"id": profile_id, "merged_into": into},
                                {"Location": location})  # fmt: skip
        body = VIEWS[view](profile, asked)
        return self._answer(view, "ok", 200, {"id": profile["user"], **body})

    async def _forward(self, request: Request, owner: URL, view: str) -> Response:
        headers = {FORWARDED: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        url = owner.with_path(request.url.path).with_query(request.query)
        async with self.rt.app.http_client.get(
            url, headers=headers, allow_redirects=False
        ) as response:
            body = await response.read()
            passed = {k: v for k, v in response.headers.items() if k in PASSED_HEADERS}
            self.rt.metrics.api_requests.labels(view, "forwarded").inc()
            return self.bytes(body, status=response.status, headers=passed,
                              content_type=response.content_type)  # fmt: skip

    def _answer(
        self, view: str, outcome: str, status: int, body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> Response:  # fmt: skip
        self.rt.metrics.api_requests.labels(view, outcome).inc()
        return self.bytes(dumps(body), status=status, content_type="application/json",
                          headers=headers)  # fmt: skip


def install(rt: Runtime, context: ContextStage) -> None:
    """Serve the Profile API on ``rt.app``'s web server, reading ``context``'s table."""
    bound = type("ProfileView", (ProfileView,), {"rt": rt, "context": context})
    rt.app.page(PREFIX + "/{profile_id}/{view}")(bound)
