"""The context agent finds the records of a partition it was never handed."""

from __future__ import annotations

from agents.continuity import Continuity


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
