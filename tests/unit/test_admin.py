"""How long a command or worker waits for Kafka at start."""

from __future__ import annotations

import pytest

from streams.runtime.admin import backoff


@pytest.mark.parametrize(
    ("budget", "waits"),
    [
        (15.5, [0.5, 1, 2, 4, 8]),  # the default: 6 attempts
        (15.4, [0.5, 1, 2, 4]),
        (0, []),  # one attempt, no retry
        (63.5, [0.5, 1, 2, 4, 8, 16, 32]),
    ],
)
def test_the_waits_double_from_half_a_second_and_fit_in_the_budget(
    budget: float, waits: list[float]
) -> None:
    assert backoff(budget) == waits
