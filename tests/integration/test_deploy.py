"""deploy/: Prometheus config and rules pass promtool, manifests pass the
Kubernetes schemas, and every kairos metric a dashboard or an alert queries
is served by a live worker."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import kubernetes_validate
import pytest
import yaml

from tests.support.dashboards import DEPLOY, queried_metrics
from tests.support.prometheus import rule_files
from tests.support.stack import REPO, Worker, produce, settings_for_test

PROMTOOL = os.environ.get("PROMTOOL", str(REPO / ".tools" / "promtool"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)


def test_prometheus_config_and_rules_pass_promtool() -> None:
    config = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = [
        r for f in rule_files() for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]
    ]
    assert len(rules) >= 7
    assert f"SUCCESS: {len(rules)} rules found" in config.stdout + config.stderr


def test_promtool_does_reject_a_broken_rule(tmp_path: Path) -> None:
    rules = (DEPLOY / "prometheus" / "alerts.yml").read_text()
    broken = tmp_path / "alerts.yml"
    broken.write_text(rules.replace("> 50000", "> > 50000", 1))
    assert promtool("check", "rules", str(broken)).returncode != 0


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_freshness_alert_test_fails_when_traits_meet_the_slo(tmp_path: Path) -> None:
    """Raised to 5 s, the SLO holds the traits' 4.975 s p99: the alert the
    test expects does not fire, and promtool says so."""
    for name in ("alerts.yml", "alerts_test.yml"):
        (tmp_path / name).write_text((DEPLOY / "prometheus" / name).read_text())
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(tests.read_text().replace('values: "2x40"', 'values: "5x40"', 1))
    result = promtool("test", "rules", str(tests))
    assert result.returncode != 0 and "KairosFeatureFreshnessP99" in result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted((DEPLOY / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_manifests_pass_the_kubernetes_schemas(path: Path) -> None:
    for resource in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(resource, "1.31", strict=True)


def test_no_pod_gets_kubernetes_service_links() -> None:
    """A Service kairos-api would set KAIROS_API_* in every pod, which kairos
    rejects as unknown settings (and a Service vllm sets VLLM_PORT for vLLM)."""
    pods = [
        resource["spec"]["template"]["spec"]
        for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
        for resource in yaml.safe_load_all(path.read_text())
        if resource["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]
    assert len(pods) >= 2
    assert all(pod.get("enableServiceLinks") is False for pod in pods)


def test_compose_requires_its_secrets_and_passes_none_empty() -> None:
    environment = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["x-kairos"]["environment"]
    for name in ("KAIROS_API_TOKEN", "KAIROS_COUPON_SECRET"):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", environment[name]), environment[name]
    empty_defaults = [n for n, v in environment.items() if re.search(r"\$\{\w+:?-\}", str(v))]
    assert not empty_defaults


@pytest.mark.broker
def test_every_queried_metric_is_served_by_a_live_worker(broker: str, tmp_path: Path) -> None:
    settings = settings_for_test(broker, "http://127.0.0.1:9/v1", "none", tmp_path)
    worker = Worker(settings)
    worker.start()
    try:
        page = {"type": "page", "name": "/", "userId": "u1", "messageId": "m1"}
        asyncio.run(produce(settings, [("clickstream", page)]))
        assert worker.wait_for("kairos_state_updates_total", 1) == 1
        time.sleep(1)  # the next fetch reports the partition's end
        text = httpx.get(f"http://127.0.0.1:{settings.web_port}/metrics", timeout=5).text
    finally:
        worker.stop()
    served = set(re.findall(r"^# TYPE (kairos_\w+) ", text, re.MULTILINE))
    served |= {name.removesuffix("_total") for name in served}
    served |= {name + "_total" for name in served}
    wanted = queried_metrics()
    assert len(wanted) >= 15
    assert wanted <= served, f"not served: {sorted(wanted - served)}"
    # The ingest consumer reports its lag per source partition: all caught up.
    lags = re.findall(r'^kairos_consumer_lag\{partition="\d+",topic="([^"]+)"\} (\S+)$', text, re.M)
    assert (settings.topics.clickstream, "0.0") in lags
    assert all(value == "0.0" for _topic, value in lags)
