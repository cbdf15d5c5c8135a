"""`kairos report --png`'s Prometheus charts: the dashboard's queries, drawn."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import orjson
import pytest

from streams.errors import CommandError
from streams.tools.charts import PANELS, legend, parse_duration, query_range, render
from tests.support.dashboards import DEPLOY
from tests.support.prometheus import grafana_expr, without_threshold

NOW = 1_795_000_000.0


def test_each_chart_is_its_dashboard_panel_query_for_query() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "kairos.json").read_text())
    by_title = {panel["title"]: panel for panel in dashboard["panels"]}
    for chart in PANELS:
        targets = by_title[chart.title]["targets"]
        assert chart.targets == tuple((t["legendFormat"], t["expr"]) for t in targets)


def test_legends_are_written_as_grafana_writes_them() -> None:
    assert legend("moments {{moment}}", {"moment": "win_back"}) == "moments win_back"
    assert legend("{{ topic }} lag", {}) == " lag"


def test_durations_are_checked() -> None:
    assert parse_duration("15m") == 900 and parse_duration("2d") == 172_800
    for bad in ("15", "0h", "1w", "-5m", ""):
        with pytest.raises(ValueError, match="expected a duration"):
            parse_duration(bad)


class FakePrometheus(BaseHTTPRequestHandler):
    """Answers /api/v1/query_range: two series for the lag query, none for the others."""

    asked: list[dict[str, list[str]]] = []

    def do_GET(self) -> None:
        params = parse_qs(urlparse(self.path).query)
        self.asked.append(params)
        result = []
        if "kairos_consumer_lag" in params["query"][0]:
            values = [[NOW - 60 + i, str(i % 7)] for i in range(60)] + [[NOW, "NaN"]]
            result = [{"metric": {"topic": t}, "values": values} for t in ("crm", "location")]
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        if "refuse" in params["query"][0]:
            body = {"status": "error", "error": "parse error"}
        self.send_response(200)
        self.end_headers()
        self.wfile.write(orjson.dumps(body))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_render_writes_one_png_per_panel_with_the_points_it_got(
    prometheus: str, tmp_path: Path
) -> None:
    charts = render(prometheus, tmp_path / "out", 3600, NOW)
    assert [c.path.name for c in charts] == ["lag.png", "funnel.png", "latency.png"]
    assert charts[0].points == {"crm": 60, "location": 60}  # NaN is not a point
    assert charts[1].points == {} and charts[2].points == {}
    for chart in charts:
        assert chart.path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    lag = FakePrometheus.asked[0]
    assert float(lag["end"][0]) - float(lag["start"][0]) == 3600
    assert float(lag["step"][0]) == 12  # about 300 points


def test_render_names_prometheus_when_it_does_not_answer(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"Prometheus at http://127.0.0.1:9 did not answer"):
        render("http://127.0.0.1:9", tmp_path, 3600, NOW)


def test_a_query_prometheus_refuses_is_named(prometheus: str) -> None:
    with httpx.Client() as client, pytest.raises(CommandError, match="refused 'refuse'"):
        query_range(client, prometheus, "refuse", NOW - 60, NOW)


def test_the_grafana_variables_are_substituted_as_grafana_does() -> None:
    expr = 'rate(x{job=~"$job"}[$__rate_interval]) + rate(y[${__interval}])'
    assert grafana_expr(expr, {"job": "kairos"}, 1) == 'rate(x{job=~"kairos"}[4s]) + rate(y[1s])'
    with pytest.raises(AssertionError, match="no value"):
        grafana_expr("rate(x[$window])", {}, 1)


def test_an_alert_loses_only_its_final_threshold() -> None:
    assert without_threshold('up{job="kairos"} == 0') == 'up{job="kairos"}'
    assert (
        without_threshold(
            "histogram_quantile(0.99, sum by (family, le) (rate(f_bucket[5m])))\n"
            "  > on () group_left max(kairos_freshness_slo_seconds)\n"
        )
        == "histogram_quantile(0.99, sum by (family, le) (rate(f_bucket[5m])))"
    )
    assert without_threshold("sum(rate(a[5m])) / clamp_min(b, 1e-9)\n  > 0.05\n") == (
        "sum(rate(a[5m])) / clamp_min(b, 1e-9)"
    )
    with pytest.raises(AssertionError):
        without_threshold('absent(up{job="kairos"})')
