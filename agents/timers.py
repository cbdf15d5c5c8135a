"""Timers: moments that fire when nothing happens (a cart left, a lapsed shopper).

A timer lives in the profiles table, beside the profiles, under a key in
due-time order: ``b"\\x00due:<13-digit due ms>:<rule>:<profile id>"``. A tick
reads only the keys that are due (:func:`due_until`); the key of a timer
says whose partition it is in (:func:`key_user`), as a profile's own key does.
"""

from __future__ import annotations

TIMER_PREFIX = b"\x00due:"
# Sorts after every timer key (';' follows ':'), and before every profile id.
TIMERS_END = b"\x00due;"


def timer_key(due: int, rule: str, user: str) -> bytes:
    return TIMER_PREFIX + f"{due:013d}:{rule}:{user}".encode()


def parse_timer(key: bytes) -> tuple[int, str, str]:
    """(due, rule, profile id) of a timer's key."""
    due, rule, user = key[len(TIMER_PREFIX) :].decode().split(":", 2)
    return int(due), rule, user


def due_until(now: int) -> bytes:
    """The key just past every timer due by ``now``."""
    return TIMER_PREFIX + f"{now:013d};".encode()  # ';' sorts after ':'


def key_user(key: bytes) -> str:
    """The profile id a table key belongs to (a timer's, or a profile's own)."""
    if key.startswith(TIMER_PREFIX):
        return key[len(TIMER_PREFIX) :].decode().split(":", 2)[-1]
    return key.decode()
