"""A real Prometheus server for the tests, configured from deploy/prometheus.

The server is Debian's, unpacked by `make` into .tools/prometheus (or
$PROMETHEUS). Its configuration is the shipped prometheus.yml with the
tests' addresses put in each job's targets and a one-second scrape and
evaluation interval; its rules are the shipped rule files, expressions,
labels and annotations unchanged. Only each rule's ``for:`` is shortened
(FOR_S): the shipped durations are minutes of production patience, and a
test that waited them out would hold a broker, a worker and vLLM for ten
minutes. The ``for:`` machinery itself still runs (an alert is pending
before it fires).

Also here: the dashboard panels' and the alert rules' PromQL, as Grafana
and the rule evaluator would send it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from streams.tools.process import ManagedProcess, free_port
from tests.support.dashboards import DEPLOY
from tests.support.stack import REPO

BINARY = Path(os.environ.get("PROMETHEUS", str(REPO / ".tools" / "prometheus")))
SHIPPED = DEPLOY / "prometheus" / "prometheus.yml"
INTERVAL_S = 1
FOR_S = 2
_COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*(bool\s+)?[-+]?[0-9.]+(e[-+]?\d+)?\s*$")
# Or with a threshold that is itself a series (an SLO gauge), matched by labels.
_SERIES_COMPARISON = re.compile(
    r"\s*(==|!=|>=|<=|>|<)\s*(bool\s+)?(on|ignoring)\s*\([^)]*\)\s*"
    r"(group_left|group_right)?\s*(\([^)]*\))?\s*[A-Za-z_:]*\(?[A-Za-z_:]+\)?\s*$"
)


@dataclass(frozen=True)
class Query:
    """One PromQL expression and where it comes from (a panel's title, or a rule's name)."""

    where: str
    expr: str


def panel_queries(scrape_s: int = INTERVAL_S) -> list[Query]:
    """Every target of every panel of every dashboard, variables substituted."""
    out = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        variables = _variables(dashboard)
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                expr = grafana_expr(target["expr"], variables, scrape_s)
                out.append(Query(f"{path.name}: {panel['title']}", expr))
    return out


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels, those inside collapsed rows too."""
    out = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return [p for p in out if p.get("type") != "row"]


def _variables(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each template variable's current value, as Grafana puts it into a query."""
    out = {}
    for var in dashboard.get("templating", {}).get("list", []):
        value = var.get("current", {}).get("value", "")
        if isinstance(value, list):  # several selected: a regex alternation
            value = "(" + "|".join(re.escape(v) for v in value) + ")"
        out[var["name"]] = ".*" if value == "$__all" else str(value)
    return out


def grafana_expr(expr: str, variables: dict[str, str], scrape_s: int) -> str:
    """``expr`` as Grafana sends it: $__rate_interval is max(interval + scrape, 4 x scrape)
    (the interval here is the scrape interval too), $__interval the scrape interval,
    $__range the dashboard's default hour, then the dashboard's own variables."""
    builtins = {
        "__rate_interval": f"{4 * scrape_s}s",
        "__interval": f"{scrape_s}s",
        "__range": "1h",
        **variables,
    }
    for name in sorted(builtins, key=len, reverse=True):  # $__rate_interval before $__range
        expr = expr.replace("${" + name + "}", builtins[name]).replace("$" + name, builtins[name])
    unknown = re.findall(r"\$\{?\w+", expr)
    assert not unknown, f"no value for the variables {unknown} in {expr!r}"
    return expr


def rule_files() -> list[Path]:
    """The rule files the shipped prometheus.yml loads."""
    config = yaml.safe_load(SHIPPED.read_text())
    return sorted(p for pattern in config["rule_files"] for p in SHIPPED.parent.glob(pattern))


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in rule_files()
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def without_threshold(expr: str) -> str:
    """An alert's expression less its final comparison with a constant or an SLO
    series, which a healthy run does not pass: what is left is the series the rule
    watches."""
    stripped = _SERIES_COMPARISON.sub("", _COMPARISON.sub("", expr.strip()))
    assert stripped != expr.strip(), f"no threshold to take off: {expr!r}"
    return stripped


def configure(home: Path, targets: dict[str, list[str]]) -> Path:
    """The shipped config, scraping ``targets`` (by job name) every second, with the
    shipped rules less their patience; returns the config file's path."""
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(SHIPPED.read_text())
    config["global"] = {
        "scrape_interval": f"{INTERVAL_S}s",
        "evaluation_interval": f"{INTERVAL_S}s",
    }
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(targets), f"a test target for each shipped job: {sorted(jobs)}"
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": targets[name]}]
        job.pop("kubernetes_sd_configs", None)
    config["rule_files"] = []
    for path in rule_files():
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = f"{FOR_S}s"
        copy = home / path.name
        copy.write_text(yaml.safe_dump(rules, sort_keys=False))
        config["rule_files"].append(str(copy))
    path = home / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Prometheus:
    """``prometheus`` scraping ``targets``, with its HTTP API on ``self.url``."""

    def __init__(self, home: Path, targets: dict[str, list[str]]) -> None:
        assert BINARY.is_file(), f"{BINARY} is missing: `make test` unpacks it"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = configure(home, targets)
        self.process = ManagedProcess(
            "prometheus",
            [str(BINARY), f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            home / "prometheus.log",
        )  # fmt: skip

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(self._ready, 60)

    def stop(self) -> None:
        self.process.stop()

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params: Any) -> Any:
        body = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) of ``expr`` now."""
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [{"value": data["result"]}]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]
