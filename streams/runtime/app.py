"""The Faust app. The only place a ``faust.App`` is built, by
:func:`build_app`, which the worker's factory (agents/worker.py) calls.

Topics are created by ``kairos topics create`` before any worker starts,
each with its configs (retention, compaction, min.insync.replicas), so the
app never declares topics itself, and it does not use Faust's leader
topic, keeping every topic kairos touches declared in streams/runtime/topics.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import faust

from streams.clients import broker_credentials
from streams.metrics import Metrics
from streams.runtime.transport import App
from streams.settings import Settings


def build_app(settings: Settings, metrics: Metrics, ready_checks: list[Callable[[], bool]]) -> App:
    """A Faust app for ``settings``, serving ``metrics`` on /metrics and
    ``ready_checks`` (with its own) on /ready."""
    app = App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.bootstrap_servers.split(",")],
        store=settings.store,
        datadir=str(settings.data_dir / "worker"),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_credentials=broker_credentials(settings),
        producer_linger_ms=settings.producer_linger_ms,
        producer_max_batch_size=settings.producer_batch_bytes,
        web_host=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.advertised_web_url,
        web_in_thread=False,
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    _serve_health(app, metrics, ready_checks)
    return app


def _serve_health(app: App, metrics: Metrics, ready_checks: list[Callable[[], bool]]) -> None:
    @app.page("/metrics")
    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        return web.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/ready")
    async def ready_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        ready = is_ready(app, ready_checks)
        return web.json({"ready": ready}, status=200 if ready else 503)


def is_ready(app: App, checks: list[Callable[[], bool]]) -> bool:
    """Partitions assigned, tables recovered, not rebalancing, and every check."""
    return bool(
        not app.rebalancing
        and not app.in_recovery
        and cast(Any, app.tables).recovery.completed.is_set()
        and app.consumer.assignment()
        and all(check() for check in checks)
    )
