"""What commands print for people: lines, and progress while they wait."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def say(text: str, stream: TextIO = sys.stdout) -> None:
    print(text, file=stream, flush=True)


class Progress:
    """Shows elapsed seconds while something starts: one redrawn line on a
    terminal, a line every 10 s elsewhere."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.drawn = False
        self.last = -10.0

    def __call__(self, elapsed: float) -> None:
        if sys.stdout.isatty():
            print(f"\r  {self.label}... {elapsed:4.0f} s", end="", flush=True)
            self.drawn = True
        elif elapsed - self.last >= 10:
            self.last = elapsed
            say(f"  {self.label}... {elapsed:.0f} s")

    def done(self) -> None:
        if self.drawn:
            print(flush=True)


class CountProgress:
    """``label: sent/total (rate/s)``: redrawn on a terminal, every 10 s elsewhere."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.started = time.monotonic()
        self.last = 0.0

    def __call__(self, count: int) -> None:
        now = time.monotonic()
        tty = sys.stderr.isatty()
        if count < self.total and now - self.last < (0.2 if tty else 10.0):
            return
        self.last = now
        rate = count / max(now - self.started, 1e-9)
        width = 30
        filled = width * count // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        line = f"{self.label} [{bar}] {count}/{self.total} ({rate:,.0f}/s)"
        if tty:
            end = "\n" if count >= self.total else ""
            print(f"\r{line}", end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
