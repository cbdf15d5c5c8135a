"""``kairos report``: do the offers work? Per moment type and prompt variant.

Reads every moment (kairos.internal.moments) and every joined outcome
(kairos.outcomes, agents/attribution.py) from the start of the topics to
their current end, drops the duplicates an at-least-once pipeline can
write (a moment by its id, an outcome by moment id and outcome), and counts:

- ``sent``: moments that led to an offer; ``held_out``: moments of the
  rule's holdout, which got none;
- ``delivered``, ``opened``, ``clicked``, ``redeemed``: offers with that
  feedback within the attribution window;
- ``converted``: moments followed by an order within the window, in either
  group.

Rates are per offer sent (open rate = opened / sent, and so on), and
per moment held out for the holdout's conversion rate. Uplift is a
variant's conversion rate minus its moment type's holdout conversion rate
(all variants of the holdout together): what the offers added.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import orjson

from agents.attribution import CONVERTED, HOLDOUT, OFFER, group_of
from streams import clients
from streams.domain import Moment
from streams.runtime.admin import at_end
from streams.runtime.topics import internal_name
from streams.settings import Settings

FEEDBACK = ("delivered", "opened", "clicked", "redeemed")


@dataclass(frozen=True)
class Row:
    """One moment type and variant: the offers' funnel, and the uplift over the holdout."""

    moment: str
    variant: str
    sent: int
    delivered: int
    opened: int
    clicked: int
    redeemed: int
    converted: int
    open_rate: float | None
    redemption_rate: float | None
    conversion_rate: float | None
    held_out: int  # the moment type's holdout, all variants
    holdout_converted: int
    holdout_conversion_rate: float | None
    uplift: float | None  # conversion rate minus the holdout's, in points of probability

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def tally(moments: Iterable[dict[str, Any]], outcomes: Iterable[dict[str, Any]]) -> list[Row]:
    """The report's rows from moment records and outcome records, duplicates dropped."""
    Cell = tuple[str, str, str]  # moment type, variant, group
    cells: dict[str, Cell] = {}  # by moment id
    for record in moments:
        group = group_of(cast(Moment, record))
        if group is not None:
            cells[record["id"]] = (record["type"], record.get("variant") or "", group)
    counted: dict[tuple[str, str], Cell] = {}  # (moment id, outcome): its cell
    for joined in outcomes:
        own = (joined["moment"], joined.get("variant") or "", joined["group"])
        key = (joined["moment_id"], joined["outcome"])
        counted.setdefault(key, cells.get(joined["moment_id"], own))
    size = Counter(cells.values())
    hits = Counter((cell, outcome) for (_id, outcome), cell in counted.items())
    held: Counter[str] = Counter()
    held_converted: Counter[str] = Counter()
    for (kind, variant, group), count in size.items():
        if group == HOLDOUT:
            held[kind] += count
            held_converted[kind] += hits[(kind, variant, group), CONVERTED]
    offered = {cell[:2] for cell in size if cell[2] == OFFER}
    offered |= {cell[:2] for cell, _outcome in hits if cell[2] == OFFER}
    rows = []
    for kind, variant in sorted(offered):
        cell = (kind, variant, OFFER)
        sent = size[cell]
        n = {outcome: hits[cell, outcome] for outcome in (*FEEDBACK, CONVERTED)}
        conversion = _rate(n[CONVERTED], sent)
        baseline = _rate(held_converted[kind], held[kind])
        uplift = None
        if conversion is not None and baseline is not None:
            uplift = round(conversion - baseline, 4)
        rows.append(Row(
            kind, variant, sent, n["delivered"], n["opened"], n["clicked"], n["redeemed"],
            n[CONVERTED], _rate(n["opened"], sent), _rate(n["redeemed"], sent), conversion,
            held[kind], held_converted[kind], baseline, uplift,
        ))  # fmt: skip
    return rows


async def read_all(settings: Settings, topic: str, idle_s: float = 10.0) -> list[dict[str, Any]]:
    """Every readable JSON record of ``topic``, from its start to its current end."""
    out: list[dict[str, Any]] = []
    for record in await read_records(settings, topic, idle_s):
        try:
            out.append(orjson.loads(record.value))
        except orjson.JSONDecodeError:  # a tombstone too
            continue
    return out


async def read_records(settings: Settings, topic: str, idle_s: float = 10.0) -> list[Any]:
    """Every record of ``topic`` (key and value as sent), from its start to its current end."""
    consumer = clients.consumer(
        settings,
        topic,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        last = time.monotonic()
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                last = time.monotonic()
                out.extend(records)
            if await at_end(consumer) or time.monotonic() - last > idle_s:
                return out
    finally:
        await consumer.stop()


async def report(settings: Settings) -> list[Row]:
    moments = await read_all(settings, internal_name(settings, "moments"))
    outcomes = await read_all(settings, settings.topics.outcomes)
    return tally(moments, outcomes)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f} pt"


def table(rows: list[Row]) -> str:
    """The terminal table."""
    head = ("moment", "variant", "sent", "delivered", "opened", "redeemed", "open rate",
            "redeem rate", "converted", "conv rate", "holdout", "holdout conv",
            "uplift")  # fmt: skip
    body = [
        (r.moment, r.variant or "-", str(r.sent), str(r.delivered), str(r.opened),
         str(r.redeemed), _pct(r.open_rate), _pct(r.redemption_rate), str(r.converted),
         _pct(r.conversion_rate), str(r.held_out), _pct(r.holdout_conversion_rate),
         _points(r.uplift))
        for r in rows
    ]  # fmt: skip
    if not body:
        return "no offers or holdout moments yet"
    widths = [max(len(line[i]) for line in (head, *body)) for i in range(len(head))]

    def fmt(line: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )

    return "\n".join([fmt(head), "  ".join("-" * w for w in widths), *map(fmt, body)])


def chart(rows: list[Row], path: Path) -> None:
    """A PNG: open, redemption and conversion rates per variant, and the holdout's."""
    from streams.tools.charts import pyplot

    plt = pyplot()
    labels = [f"{r.moment}\n{r.variant or '-'}" for r in rows]
    series = {
        "open rate": [r.open_rate or 0 for r in rows],
        "redemption rate": [r.redemption_rate or 0 for r in rows],
        "conversion rate": [r.conversion_rate or 0 for r in rows],
        "holdout conversion": [r.holdout_conversion_rate or 0 for r in rows],
    }
    figure, axes = plt.subplots(figsize=(max(6, 2.2 * len(rows)), 4.5))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        positions = [x + (i - (len(series) - 1) / 2) * width for x in range(len(rows))]
        axes.bar(positions, [v * 100 for v in values], width, label=name)
    axes.set_xticks(range(len(rows)), labels)
    axes.set_ylabel("% of moments")
    axes.set_title("kairos offers: funnel and uplift over the holdout")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)
