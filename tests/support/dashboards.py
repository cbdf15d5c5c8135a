"""The kairos metrics that the Grafana dashboards and the alert rules query."""

from __future__ import annotations

import json
import re

import yaml

from tests.support.stack import REPO

DEPLOY = REPO / "deploy"
METRIC = re.compile(r"\bkairos_[a-z_]+")
VLLM_METRIC = re.compile(r"\bvllm:[a-z_]+")
SUFFIXES = ("_bucket", "_count", "_sum")


def queried_metrics(pattern: re.Pattern[str] = METRIC) -> set[str]:
    """Metric families (kairos's, or vLLM's with VLLM_METRIC) that the dashboards
    and the alert rules name."""
    exprs: list[str] = []
    for dashboard in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        panels = json.loads(dashboard.read_text())["panels"]
        exprs += [target["expr"] for panel in panels for target in panel["targets"]]
    for group in yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]:
        exprs += [rule["expr"] for rule in group["rules"]]
    names = {name for expr in exprs for name in pattern.findall(expr)}
    for suffix in SUFFIXES:
        names = {n.removesuffix(suffix) for n in names}
    return names
