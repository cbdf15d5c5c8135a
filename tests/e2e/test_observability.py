"""The dashboards and alerts on a real Prometheus, scraping a live worker and vLLM.

A worker (its LLM the session's vLLM serving SmolLM2, behind a switch) runs the attribution
scenario: visits, a holdout, offers, feedback, orders, poison, a merge, an
expired profile, Profile API reads. Prometheus scrapes it and vLLM every
second and evaluates the shipped rules. Then every Grafana panel's query
and every alert rule's expression is asked of Prometheus: each must return
series. An alert's expression is asked without its threshold (a healthy run
does not cross it; what is left is what the rule watches), and every rule
must evaluate without error. Then the LLM goes down, and the fallback-rate
alert must fire; then the worker stops, and the worker-down alert must fire.

SmolLM2 on a busy CPU can fail the guardrails or the deadline often enough
that the healthy run's fallback rate is over the alert's half already; so
what the outage test holds is that the outage's own fallbacks (unavailable,
circuit_open) are counted and the alert fires with them, not that it was
quiet before (the test prints how it stood).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.rules import in_holdout
from streams.codecs import loads
from streams.settings import Settings
from streams.tools.charts import PANELS
from tests.e2e.scenario import walk_in
from tests.integration.test_attribution import (
    CONTROL,
    HOLDOUT_PCT,
    REPLIER,
    REPLIES,
    RULES,
    TREATED,
    events,
    follow_up,
    replies,
)
from tests.support.llm_gate import LLMGate
from tests.support.prometheus import (
    Prometheus,
    Query,
    alert_rules,
    panel_queries,
    without_threshold,
)
from tests.support.stack import Worker, consume, produce, run_cli, settings_for_test

pytestmark = [pytest.mark.broker, pytest.mark.llm]

HOUR = 3600_000
# People who walk in while the LLM is down, none held out: twice the healthy
# run's offers and more, so that whatever share of those fell back, the
# 10-minute fallback rate passes the alert's half.
OFFERED = [
    u for u in (f"outage{n}" for n in range(500)) if not in_holdout(u, "store_entry", HOLDOUT_PCT)
]
OUTAGE_USERS = OFFERED[: 2 * len(TREATED) + 2]
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass
class Stack:
    settings: Settings
    worker: Worker
    gate: LLMGate
    prometheus: Prometheus
    answers: dict[Query, list[dict[str, Any]]] = field(default_factory=dict)


def visits(users: list[str], at: int) -> list[tuple[str, Any]]:
    """Each person named, looking at running shoes, then walking into Flatiron at ``at``."""
    return [event for user in users for event in walk_in(user, user.capitalize(), at, at - HOUR)]


def until(probe: Any, seconds: float, interval: float = 0.5) -> Any:
    """Poll ``probe`` until it returns something true, or ``seconds`` pass; its last value."""
    deadline = time.monotonic() + seconds
    while not (value := probe()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


def total(prometheus: Prometheus, expr: str) -> float:
    return sum(float(sample["value"][1]) for sample in prometheus.query(expr))


def run_scenario(stack: Stack) -> None:
    """The attribution scenario, through the worker, until Prometheus has seen it all."""
    settings, now = stack.settings, int(time.time() * 1000)
    at = now - 5 * 60_000  # recent: a store-entry offer goes out during the visit
    extra = [
        ("clickstream", {"type": "identify", "anonymousId": "anon-1", "userId": "late",
                         "messageId": "id-late", "timestamp": at + 1}),
        ("clickstream", {"type": "page", "name": "/", "userId": "gone",
                         "messageId": "pg-gone", "timestamp": now - 100 * 24 * HOUR}),
        ("clickstream", {"type": "page", "name": "/", "userId": TREATED[0],
                         "messageId": f"v-{TREATED[0]}", "timestamp": at - 60_000}),  # again
        ("clickstream", b"{not json"),
    ]  # fmt: skip
    asyncio.run(produce(settings, replies(at)))  # in the profiles before the visits
    assert stack.worker.wait_for("kairos_replies_total", len(REPLIES)) == len(REPLIES)
    asyncio.run(produce(settings, events(TREATED, CONTROL, at) + extra))
    offers = asyncio.run(
        consume(settings, settings.topics.offers, lambda r: len(r) >= len(TREATED), 180)
    )
    assert len(offers) >= len(TREATED), stack.worker.process.tail()
    # Whatever the model wrote, the shoes the reply ruled out were not offered.
    [ruled_out] = [o for o in map(loads, (r.value for r in offers)) if o["user"] == REPLIER]
    assert ruled_out["product_id"] == "p-201" and "reply:exclude:p-101" in ruled_out["context_used"]
    assert stack.gate.answered[200], (stack.gate.answered, stack.gate.last_error[:500])
    asyncio.run(produce(settings, follow_up(TREATED, CONTROL, at)))
    stack.worker.wait_for("kairos_profiles_expired_total", 1, seconds=30)
    api = f"http://127.0.0.1:{settings.web_port}/v1/profiles"
    for user in (TREATED[0], CONTROL[0], "nobody"):
        httpx.get(f"{api}/{user}/offers", timeout=10)
    outcomes = len(TREATED) + 6 + 3 + 4 + 1  # as test_attribution counts them
    seen = until(
        lambda: (
            total(stack.prometheus, "sum(kairos_attributed_outcomes_total)") >= outcomes
            and total(stack.prometheus, "sum(kairos_api_requests_total)") >= 3
        ),
        60,
    )
    assert seen, "Prometheus did not see the scenario's outcomes"
    time.sleep(3)  # a few more scrapes, so every rate() has two samples of the end state


@pytest.fixture(scope="module")
def healthy(
    broker: str, smollm2_llm: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    # SmolLM2, not the tiny random Llama: the tiny model's answers are noise
    # the guardrails reject, so the dashboard's offer and token panels would
    # show nothing a real model would make.
    tmp = tmp_path_factory.mktemp("observability")
    (tmp / "rules.yaml").write_text(RULES)
    url, model = smollm2_llm
    with LLMGate(url) as gate:
        settings = settings_for_test(broker, gate.url, model, tmp).model_copy(
            update={"rules_file": tmp / "rules.yaml", "sweep_interval_s": 1.0}
        )
        worker = Worker(settings)
        vllm = url.removeprefix("http://").removesuffix("/v1")
        prometheus = Prometheus(
            tmp / "prometheus", {"kairos": [f"127.0.0.1:{settings.web_port}"], "vllm": [vllm]}
        )
        worker.start()
        prometheus.start()
        try:
            # A counter's first scrape is its baseline: what happened before it
            # is never in a rate(). So nothing is sent until both are scraped.
            scraped = until(lambda: len(prometheus.query("up == 1")) == 2, 30)
            assert scraped, prometheus.query("up")
            stack = Stack(settings, worker, gate, prometheus)
            run_scenario(stack)
            for query in panel_queries():
                stack.answers[query] = prometheus.query(query.expr)
            for rule in alert_rules():
                query = Query(rule["alert"], without_threshold(rule["expr"]))
                stack.answers[query] = prometheus.query(query.expr)
            yield stack
        finally:
            worker.stop()
            prometheus.stop()


def test_every_dashboard_panel_query_returns_series(healthy: Stack) -> None:
    queries = panel_queries()
    assert len(queries) >= 30
    empty = [f"{q.where}: {q.expr}" for q in queries if not healthy.answers[q]]
    assert not empty, "panels with no data after the scenario:\n" + "\n".join(empty)


def test_every_alert_rule_evaluates_and_watches_series_that_exist(healthy: Stack) -> None:
    rules = alert_rules()
    assert {"KairosFallbackRate", "KairosWorkerDown"} <= {r["alert"] for r in rules}
    loaded = {rule["name"]: rule for rule in healthy.prometheus.rules()}
    alerts = {name for name, rule in loaded.items() if rule["type"] == "alerting"}
    assert alerts == {r["alert"] for r in rules}
    for name, rule in loaded.items():  # recording rules too
        assert rule["health"] == "ok" and not rule.get("lastError"), (name, rule)
    for rule in rules:
        query = Query(rule["alert"], without_threshold(rule["expr"]))
        assert healthy.answers[query], f"{query.where}: {query.expr} has no series"


def test_the_worker_down_alert_is_quiet_while_the_worker_runs(healthy: Stack) -> None:
    assert [s["value"][1] for s in healthy.prometheus.query('up{job="kairos"}')] == ["1"]
    assert healthy.prometheus.alerts("KairosWorkerDown") == []


def charts_written(stderr: str) -> dict[str, list[int]]:
    """From `kairos report --png`'s output: points per series, per chart file."""
    out = {}
    for line in stderr.splitlines():
        if match := re.match(r"wrote .*/(\w+)\.png: (.*)$", line):
            out[match[1]] = [int(n) for n in re.findall(r"\((\d+) points\)", match[2])]
    return out


def test_report_png_draws_lag_funnel_and_latency_from_prometheus(
    healthy: Stack, tmp_path: Path
) -> None:
    settings = healthy.settings.model_copy(update={"prometheus_url": healthy.prometheus.url})
    result = run_cli(settings, "report", "--png", str(tmp_path / "charts"), "--since", "15m")
    assert result.returncode == 0, result.stderr
    drawn = charts_written(result.stderr)
    assert set(drawn) == {"rates", *(panel.name for panel in PANELS)}, result.stderr
    for panel in PANELS:
        assert drawn[panel.name] and all(n > 0 for n in drawn[panel.name]), (panel, drawn)
    for name in drawn:
        data = (tmp_path / "charts" / f"{name}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000, name


def test_report_png_names_a_prometheus_that_does_not_answer(healthy: Stack, tmp_path: Path) -> None:
    settings = healthy.settings.model_copy(update={"prometheus_url": "http://127.0.0.1:9"})
    result = run_cli(settings, "report", "--png", str(tmp_path))
    assert result.returncode == 1
    assert "Prometheus at http://127.0.0.1:9 did not answer" in result.stderr


OUTAGE_FALLBACKS = 'sum(kairos_llm_fallbacks_total{reason=~"unavailable|circuit_open"})'


def firing(prometheus: Prometheus, name: str, seconds: float) -> list[dict[str, Any]]:
    """The alert ``name`` once it fires (within ``seconds``), else []."""

    def alerts() -> list[dict[str, Any]]:
        return [a for a in prometheus.alerts(name) if a["state"] == "firing"]

    return until(alerts, seconds, interval=1.0)


@dataclass
class Outage:
    ratio_before: float  # the fallback-rate alert's expression, less its threshold
    state_before: list[str]  # the alert's state then (none, pending or firing)
    fell_back: float  # offers that fell back for the outage (unavailable, circuit_open)
    firing: list[dict[str, Any]]
    ratio_after: float


@pytest.fixture(scope="module")
def llm_down(healthy: Stack) -> Iterator[Outage]:
    """The LLM goes down while people walk in; what Prometheus says then."""
    prometheus, settings = healthy.prometheus, healthy.settings
    [rule] = [r for r in alert_rules() if r["alert"] == "KairosFallbackRate"]
    ratio = without_threshold(rule["expr"])
    before = (total(prometheus, ratio), [a["state"] for a in prometheus.alerts(rule["alert"])])
    counted = total(prometheus, OUTAGE_FALLBACKS)
    healthy.gate.open = False
    asyncio.run(produce(settings, visits(OUTAGE_USERS, int(time.time() * 1000) - 60_000)))
    want = counted + len(OUTAGE_USERS)
    until(lambda: total(prometheus, OUTAGE_FALLBACKS) >= want, 180)
    fell_back = total(prometheus, OUTAGE_FALLBACKS) - counted
    alerts = firing(prometheus, rule["alert"], 60)
    yield Outage(*before, fell_back, alerts, total(prometheus, ratio))
    healthy.gate.open = True


def test_the_fallback_rate_alert_fires_while_the_llm_is_down(llm_down: Outage) -> None:
    print(llm_down)  # with -rP: how the healthy run stood before the outage
    assert llm_down.fell_back >= len(OUTAGE_USERS), llm_down
    assert llm_down.firing, f"KairosFallbackRate did not fire: {llm_down}"
    assert llm_down.ratio_after > 0.5, llm_down


def test_the_worker_down_alert_fires_when_the_worker_stops(
    healthy: Stack, llm_down: Outage
) -> None:
    """After the outage: the worker is the last thing to stop."""
    healthy.worker.stop()
    alerts = firing(healthy.prometheus, "KairosWorkerDown", 60)
    assert alerts, "KairosWorkerDown did not fire"
    assert [a["labels"]["job"] for a in alerts] == ["kairos"]
