"""``kairos report --png``: the dashboard panels a person would rather look at.

Consumer lag, the moments-to-offers funnel and the latency per stage, drawn
from the same PromQL as the Grafana dashboard (deploy/grafana/dashboards/
kairos.json; a test keeps the two identical), over Prometheus's HTTP API
(``/api/v1/query_range``) at ``KAIROS_PROMETHEUS_URL``. Each panel is one
PNG file in the directory given.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from streams.errors import CommandError

# About this many points per series, whatever the range (Grafana's default too).
POINTS = 300
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _p(quantile: str, stage: str) -> str:
    return (
        f"histogram_quantile({quantile}, sum by (le) "
        f'(rate(kairos_stage_seconds_bucket{{stage="{stage}"}}[5m])))'
    )


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: its file name, its title there, and its (legend, query) pairs."""

    name: str
    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]


PANELS = (
    Panel("lag", "Consumer lag (records), by source topic", "records behind",
          (("{{topic}}", "sum by (topic) (kairos_consumer_lag)"),)),
    Panel("funnel", "Funnel: moments, held back, offers", "count in the last hour", (
        ("moments {{moment}}", "sum by (moment) (increase(kairos_moments_total[1h]))"),
        ("held back: {{reason}}",
         "sum by (reason) (increase(kairos_moments_suppressed_total[1h]))"),
        ("offers ({{source}})", "sum by (source) (increase(kairos_offers_total[1h]))"),
    )),
    Panel("latency", "Latency p50 / p99", "seconds", (
        ("event→moment p50", _p("0.5", "event_to_moment")),
        ("event→moment p99", _p("0.99", "event_to_moment")),
        ("moment→prompt p99", _p("0.99", "moment_to_generation")),
        ("generation p50", _p("0.5", "generation")),
        ("generation p99", _p("0.99", "generation")),
        ("p99 ingest to state (feature lag)", _p("0.99", "ingest_to_state")),
        ("p99 prompt", _p("0.99", "prompt")),
        ("p99 delivery", _p("0.99", "delivery")),
    )),
)  # fmt: skip


@dataclass(frozen=True)
class Chart:
    """A PNG written, and what it shows: points with a value, per series drawn."""

    path: Path
    points: dict[str, int]


def parse_duration(text: str) -> float:
    """Seconds in ``30m``, ``6h``, ``2d``: Prometheus's way of writing a range."""
    match = _DURATION.match(text.strip())
    if not match or int(match[1]) == 0:
        raise ValueError(f"expected a duration such as 15m, 6h or 2d, got {text!r}")
    return float(int(match[1]) * _UNIT_S[match[2]])


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only; a clear error if it is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise CommandError("--png needs matplotlib: pip install 'kairos[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def legend(template: str, labels: dict[str, str]) -> str:
    """A series' name as Grafana writes it from a legend format such as ``{{topic}}``."""
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template)


def query_range(
    client: httpx.Client, url: str, expr: str, start: float, end: float
) -> list[dict[str, Any]]:
    """The series of ``expr`` between ``start`` and ``end`` (Unix seconds)."""
    step = max(1.0, (end - start) / POINTS)
    params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
    try:
        answer = client.get(f"{url}/api/v1/query_range", params=params)
        body = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise CommandError(f"Prometheus at {url} did not answer: {exc}") from None
    if body.get("status") != "success":
        raise CommandError(f"Prometheus at {url} refused {expr!r}: {body.get('error')}")
    return list(body["data"]["result"])


def draw(plt: Any, panel: Panel, series: dict[str, list[tuple[float, float]]], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for name, values in sorted(series.items()):
        times = [datetime.fromtimestamp(t, UTC) for t, _v in values]
        axes.plot(times, [v for _t, v in values], label=name, linewidth=1.5)
    if not series:
        axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    else:
        axes.legend(fontsize="small", loc="upper left")
    axes.set_title(f"kairos: {panel.title}")
    axes.set_ylabel(panel.unit)
    axes.set_ylim(bottom=0)  # counts, lags and latencies: never below zero
    axes.set_xlabel("time (UTC)")
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    plt.close(figure)


def render(url: str, out: Path, since_s: float, now: float) -> list[Chart]:
    """Each panel of PANELS over the last ``since_s`` seconds, as ``out/<name>.png``."""
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    charts = []
    with httpx.Client(timeout=30) as client:
        for panel in PANELS:
            series: dict[str, list[tuple[float, float]]] = {}
            for template, expr in panel.targets:
                for result in query_range(client, url, expr, now - since_s, now):
                    values = [(float(t), float(v)) for t, v in result["values"]]
                    values = [(t, v) for t, v in values if math.isfinite(v)]
                    series[legend(template, result["metric"])] = values
            path = out / f"{panel.name}.png"
            draw(plt, panel, series, path)
            charts.append(Chart(path, {name: len(v) for name, v in series.items()}))
    return charts
