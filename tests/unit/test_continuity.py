"""The context agent finds the records of a partition it was never handed."""

from __future__ import annotations

import asyncio

from faust.types import TP

from agents import context
from agents.continuity import Continuity
from agents.rules import load_rules
from agents.worker import build_runtime
from streams.settings import Settings


def test_the_first_record_and_each_next_one_show_no_skip() -> None:
    continuity = Continuity()
    continuity.assigned({0})
    assert [continuity.skipped(0, offset) for offset in (5, 6, 7)] == [range(0)] * 3


def test_a_record_further_on_shows_the_offsets_between_as_skipped() -> None:
    continuity = Continuity()
    continuity.assigned({0, 1})
    continuity.skipped(0, 41)
    assert continuity.skipped(0, 44) == range(42, 44)
    assert continuity.skipped(0, 45) == range(0)
    assert continuity.skipped(1, 9) == range(0)  # each partition on its own


def test_records_read_again_after_a_seek_back_are_not_a_skip() -> None:
    continuity = Continuity()
    continuity.assigned({0})
    continuity.skipped(0, 50)
    assert continuity.skipped(0, 40) == range(0)
    assert continuity.skipped(0, 41) == range(0)  # and on from there


def test_a_partition_owned_in_the_next_generation_too_keeps_its_expectation() -> None:
    continuity = Continuity()
    continuity.assigned({0, 1})
    continuity.skipped(0, 41)
    continuity.assigned({0})  # revoked and given back: nobody else read it between
    assert continuity.skipped(0, 44) == range(42, 44)


def test_a_partition_another_worker_held_meanwhile_starts_afresh() -> None:
    continuity = Continuity()
    continuity.assigned({0})
    continuity.skipped(0, 41)
    continuity.assigned({1})  # partition 0 went to another worker
    continuity.assigned({0, 1})  # and came back, read on by that worker
    assert continuity.skipped(0, 90) == range(0)


def test_the_context_stage_learns_each_generation_from_the_apps_assignment() -> None:
    rt = build_runtime(Settings(store="memory://"), load_rules(None))
    stage = context.install(rt)
    events, other = rt.topics.events.get_topic_name(), "kairos.clickstream"

    async def generations() -> tuple[range, range]:
        await rt.app.on_partitions_assigned.send({TP(events, 0), TP(events, 1), TP(other, 2)})
        stage.continuity.skipped(0, 41)
        await rt.app.on_partitions_assigned.send({TP(events, 0)})
        kept = stage.continuity.skipped(0, 44)
        await rt.app.on_partitions_assigned.send({TP(events, 1)})
        await rt.app.on_partitions_assigned.send({TP(events, 0)})
        return kept, stage.continuity.skipped(0, 90)

    kept, afresh = asyncio.run(generations())
    assert kept == range(42, 44)  # owned in both generations
    assert afresh == range(0)  # another worker held it in between
