"""The worker's ingest path per event, short of Kafka, in one process.

:func:`stage_cost` takes bench.fold_cost's workload through what one worker's
ingest runs on its CPU for each batch it fetches: :meth:`Router.route`
(decode, validate, encode, bundle), then per bundle what
:meth:`ContextStage.fold_in_process` does under its lock (decode the bundle,
:meth:`ContextStage.fold_bundle`: the guarded fold, the table writes, the
freshness and stage histograms, the counters and moments of
agents/output.py). What it leaves out is Kafka's: the table writes go to the
in-memory store without a changelog produce, and the topics' sends deliver
at once without encoding a record. ``python -m bench.instructions --stage``
counts its instructions.
"""

from __future__ import annotations

import asyncio
import gc
from contextlib import ExitStack
from typing import Any
from unittest import mock

from bench.fold_cost import SOURCES, embed_catalog, source_batches, workload


async def _sent(*args: Any, **kwargs: Any) -> asyncio.Future[None]:
    """A send delivered at once."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


async def _written(app: Any, table: Any, partition: int, changes: Any) -> asyncio.Future[None]:
    """write_batch's store writes, without its changelog produce."""
    for key, value in changes:
        if value is None:
            table.data.pop(key, None)
        else:
            table.data[key] = value
    return await _sent()


async def _passes(stage: Any, batches: list[Any], passes: int) -> int:
    """Route and fold ``batches`` ``passes`` times, each from no state; events applied."""
    from agents.handoffs import Placed
    from agents.ingest import Router
    from streams.codecs import loads
    from streams.runtime.bundles import bundles

    rt = stage.rt
    topic = rt.topics.events.get_topic_name()
    for _ in range(passes):
        rt.profiles.data.data.clear()
        router = Router(SOURCES, rt.settings.partitions)  # its links cache from empty
        for batch in batches:
            for partition, encoded in router.route(batch).bundles.items():
                for bundle in bundles(encoded):
                    placed = Placed(topic, partition)
                    await (await stage.fold_bundle(partition, loads(bundle), placed))
                    placed.offset.set_result(0)
    return int(rt.metrics.state_updates._value.get())


def stage_cost(events: int, users: int, passes: int = 1) -> int:
    """Events applied by ``passes`` passes of the ingest path over the workload."""
    from agents import context
    from agents.context import ContextStage
    from agents.rules import load_rules
    from agents.worker import build_runtime
    from streams.settings import Settings

    settings = Settings(store="memory://")
    rt = build_runtime(settings, load_rules(settings.rules_file))
    embed_catalog(rt.reference)
    stage = ContextStage(rt)
    batches = source_batches(workload(events, users))
    with ExitStack() as stubs:
        stubs.enter_context(mock.patch.object(context, "write_batch", _written))
        for sender in (rt.topics.events, rt.topics.moments, rt.topics.outcomes, rt.dead_letters):
            stubs.enter_context(mock.patch.object(sender, "send", _sent))
        gc.freeze()  # as the worker does after start-up
        try:
            return asyncio.run(_passes(stage, batches, passes))
        finally:
            gc.unfreeze()
