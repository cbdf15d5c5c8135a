"""docs/EVENTS.md's examples are real: each decodes, and nothing is left untried."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from streams.events import SEGMENT_TYPES, decode

DOC = Path(__file__).resolve().parents[2] / "docs" / "EVENTS.md"
EXAMPLES = re.findall(r"```json (\w+)\n(.*?)```", DOC.read_text(), re.DOTALL)


@pytest.mark.parametrize(("source", "text"), EXAMPLES)
def test_documented_example_decodes(source: str, text: str) -> None:
    body = orjson.loads(text)
    event = decode(source, text.encode(), record_ts_ms=1_795_300_000_000)
    assert event["kind"] == body.get("type", source)
    assert event["user"] == (body.get("userId") or body.get("anonymousId"))


def test_every_event_type_has_an_example() -> None:
    kinds = {orjson.loads(text).get("type", source) for source, text in EXAMPLES}
    assert kinds >= SEGMENT_TYPES | {"traits", "order", "ticket", "loyalty", "location", "feedback"}
