"""The context agent's output: what one fold sends, and its metrics.

Forwarded events go back to kairos.internal.events, dead letters to
kairos.dlq, joined outcomes to kairos.outcomes, and moments to
kairos.internal.moments, each moment also handed to the early starts
(agents/handoffs.py) so its offer can begin at once. :func:`emit` returns
one future for all of it, with the table's writes: the bundle is acked once
that lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from types import SimpleNamespace
from typing import Any

from agents.attribution import group_of
from agents.fold import Fold
from agents.handoffs import Placed
from agents.runtime import Runtime
from streams.codecs import dumps, now_ms
from streams.domain import Event, Moment
from streams.runtime.bundles import bundles_by_partition


async def emit(rt: Runtime, where: Any, fold: Fold, written: Awaitable[Any]) -> Awaitable[Any]:
    """Send what ``fold`` produced; ``where`` is its bundle's record (or
    :class:`Placed`), named by its dead letters."""
    _count(rt, fold)
    sends: list[Any] = [written]
    for partition, bundle in bundles_by_partition(fold.forwards, rt.partition_for):
        sends.append(await rt.topics.events.send(value=bundle, partition=partition))
    sends += [await _dead_letter(rt, where, *dead) for dead in fold.dead]
    sends += [await _outcome(rt, joined) for joined in fold.outcomes]
    detected = now_ms()
    sends += [await _moment(rt, event, moment, detected) for event, moment in fold.moments]
    return asyncio.gather(*sends)


def _count(rt: Runtime, fold: Fold) -> None:
    metrics = rt.metrics
    metrics.state_updates.inc(fold.applied)
    metrics.state_writes.inc(len(fold.dirty))
    if fold.duplicates:
        metrics.duplicates.inc(fold.duplicates)
    if fold.late:
        metrics.event_time.labels("late").inc(fold.late)
    if fold.future:
        metrics.event_time.labels("future").inc(fold.future)
    for outcome, count in fold.merges.items():
        metrics.identity_merges.labels(outcome).inc(count)
    for reason, count in fold.unattributed.items():
        metrics.unattributed.labels(reason).inc(count)
    for outcome, count in fold.replies.items():
        metrics.replies.labels(outcome).inc(count)


async def _dead_letter(
    rt: Runtime, where: Any, event: Event, code: str, reason: str
) -> Awaitable[Any]:
    if isinstance(where, Placed):  # its offset is known once ingest's produce lands
        return asyncio.ensure_future(_dead_letter_placed(rt, where, event, code, reason))
    return await rt.dead_letters.send(
        where, code=code, reason=reason, stage="context", value=dumps(event)
    )


async def _dead_letter_placed(
    rt: Runtime, placed: Placed, event: Event, code: str, reason: str
) -> None:
    """A dead letter of a bundle folded in-process, once its offset is known."""
    where = SimpleNamespace(
        topic=placed.topic, partition=placed.partition, offset=await placed.offset, key=None
    )
    sent = await rt.dead_letters.send(
        where, code=code, reason=reason, stage="context", value=dumps(event)
    )
    await sent


async def _outcome(rt: Runtime, joined: dict[str, Any]) -> Awaitable[Any]:
    rt.metrics.attributed.labels(
        joined["moment"], joined["variant"] or "", joined["group"], joined["outcome"]
    ).inc()
    sent = await rt.topics.outcomes.send(key=joined["user"].encode(), value=dumps(joined))
    rt.metrics.events_out.labels("outcomes", joined["outcome"]).inc()
    return sent


async def _moment(rt: Runtime, event: Event, moment: Moment, detected: int) -> Awaitable[Any]:
    metrics = rt.metrics
    moment["ingested_at"], moment["detected_at"] = event["at"], detected
    metrics.moments.labels(moment["type"]).inc()
    if (group := group_of(moment)) is not None:
        metrics.attribution_moments.labels(moment["type"], moment["variant"], group).inc()
    if "suppressed" in moment:
        metrics.moments_suppressed.labels(moment["type"], moment["suppressed"]).inc()
    if not event.get("timer"):  # a timer's moment has no event to measure from
        metrics.stage_latency.labels("event_to_moment").observe(
            max(0, detected - event["ts"]) / 1000
        )
    sent = await rt.topics.moments.send(key=moment["user"].encode(), value=dumps(moment))
    metrics.events_out.labels("moments", moment["type"]).inc()
    # The offers stage (agents/delivery.py) claims it when it reads the moment.
    rt.early.start(moment, rt.partition_for(moment["user"]))
    return sent
