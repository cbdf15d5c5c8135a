"""A coverage-guided fuzz target for the event decoder (atheris, libFuzzer).

Any bytes, from any source topic, either decode to an event with a person
and an event time, or raise InvalidEvent with a code and a reason: nothing
else. The corpus starts from every example in docs/EVENTS.md.

    python tests/fuzz/fuzz_decoder.py -max_total_time=300   # make fuzz
    python tests/fuzz/fuzz_decoder.py -runs=20000           # what the tests run
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from streams.errors import InvalidEvent
    from streams.events import SOURCES, decode

DOC = Path(__file__).resolve().parents[2] / "docs" / "EVENTS.md"
RECORD_TS_MS = 1_795_300_000_000


def one_input(data: bytes) -> None:
    if not data:
        return
    source = SOURCES[data[0] % len(SOURCES)]
    try:
        event = decode(source, data[1:], record_ts_ms=RECORD_TS_MS)
    except InvalidEvent as exc:
        if not (exc.code and exc.reason):
            raise AssertionError(f"an InvalidEvent without code or reason: {exc!r}") from None
        return
    if not (isinstance(event["user"], str) and event["user"] and event["user"].isprintable()):
        raise AssertionError(f"decoded without a usable person id: {event!r}")
    if not isinstance(event["ts"], int):
        raise AssertionError(f"decoded without an integer event time: {event!r}")


def seed_corpus() -> str:
    """A folder with one file per documented example: the source's index, then the JSON."""
    folder = Path(tempfile.mkdtemp(prefix="kairos-fuzz-"))
    examples = re.findall(r"```json (\w+)\n(.*?)```", DOC.read_text(), re.DOTALL)
    for n, (source, text) in enumerate(examples):
        (folder / f"example-{n}").write_bytes(bytes([SOURCES.index(source)]) + text.encode())
    return str(folder)


def main() -> None:
    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        argv.append(seed_corpus())
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
