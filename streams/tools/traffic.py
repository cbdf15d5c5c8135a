"""Planned traffic: what the producer path sends, and who the synthetic shoppers are.

Kept free of Kafka imports: the command line builds its arguments from
:class:`Population` in every environment, the LLM runtime's included.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Planned:
    """An event to send ``at`` seconds after the start; bytes go out as they are."""

    at: float
    source: str
    event: dict[str, Any] | bytes


@dataclass(frozen=True)
class Population:
    """Who shops and for how long: ``users`` shoppers, ``duration`` seconds of
    traffic, ``rate`` background events per second, planned from ``seed``."""

    users: int
    duration: float
    rate: float
    seed: int = 7

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, defaults: Population) -> None:
        d = defaults
        parser.add_argument("--users", type=int, default=d.users, help=f"shoppers ({d.users})")
        parser.add_argument(
            "--duration",
            type=float,
            default=d.duration,
            help=f"seconds of traffic ({d.duration:g})",
        )
        parser.add_argument(
            "--rate", type=float, default=d.rate, help=f"background events/s ({d.rate:g})"
        )
        parser.add_argument("--seed", type=int, default=d.seed, help=f"population seed ({d.seed})")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Population:
        return cls(args.users, args.duration, args.rate, args.seed)
