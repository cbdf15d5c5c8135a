"""The ``kairos`` command line.

    kairos demo            everything embedded, a synthetic population, offers printed
    kairos worker          the Faust worker (all agents)
    kairos broker          the embedded Kafka-protocol broker, in the foreground
    kairos llm             the embedded vLLM server with SmolLM2, in the foreground
    kairos produce synthetic  shoppers browsing and visiting stores, seedable, rate-controlled
    kairos produce file F  JSON lines (a Segment export, .gz too), routed by event type
    kairos load traits F   traits from CSV or JSON lines, as CRM trait records
    kairos tail            print offers as a consumer would, deduplicated by offer id
    kairos report          per moment type and variant: sent, open, redemption and conversion
                           rates, uplift over the holdout (a table; --png DIR for charts of
                           the rates and, from Prometheus, of lag, funnel and latency)
    kairos eval            prompt variants and models judged on recorded moments
    kairos dataset export  each moment's point-in-time features and outcomes, as JSON lines
    kairos topics create   create every declared topic (idempotent)
    kairos topics list     the declared topics and whether they exist

Each subcommand imports only what it needs: ``kairos llm`` runs in the LLM
runtime environment, which does not have Faust.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from streams.errors import BrokerUnavailable, CommandError, SettingsError
from streams.settings import Settings, load_settings, prepare_data_dir
from streams.tools import eval_cli
from streams.tools.traffic import Population

if TYPE_CHECKING:
    from streams.tools.process import ManagedProcess


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="kairos: %(message)s", level=logging.WARNING)
    try:
        settings = load_settings()
        return int(args.run(settings, args) or 0)
    except SettingsError as exc:
        print(f"kairos: {exc}", file=sys.stderr)
        return 2
    except (CommandError, BrokerUnavailable) as exc:
        # A broker that does not answer is the same for every command: say so, exit 1.
        print(f"kairos: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kairos", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run everything embedded and print offers as they land")
    Population.add_arguments(demo, Population(users=30, duration=90.0, rate=40.0))
    demo.add_argument("--offers-out", type=Path, help="write each offer as a JSON line here")
    demo.set_defaults(run=run_demo)

    sub.add_parser("worker", help="run the Faust worker").set_defaults(run=run_worker)
    sub.add_parser("broker", help="run the embedded broker").set_defaults(run=run_broker)
    llm = sub.add_parser("llm", help="run the embedded vLLM server")
    llm.add_argument("--prepare", action="store_true", help="only convert the model, then exit")
    llm.set_defaults(run=run_llm)

    produce = sub.add_parser("produce", help="send events to the source topics")
    produce_sub = produce.add_subparsers(required=True, metavar="SOURCE")
    synthetic = produce_sub.add_parser("synthetic", help="a synthetic population of shoppers")
    Population.add_arguments(synthetic, Population(users=100, duration=60.0, rate=50.0))
    synthetic.set_defaults(run=run_produce_synthetic)
    from_file = produce_sub.add_parser("file", help="JSON lines, e.g. a Segment export (.gz ok)")
    from_file.add_argument("path", type=Path)
    from_file.add_argument(
        "--source",
        default="auto",
        choices=["auto", "clickstream", "crm", "location", "feedback"],
        help="topic for every line; auto routes by each event's type (auto)",
    )
    from_file.add_argument("--rate", type=float, help="events per second (as fast as possible)")
    from_file.set_defaults(run=run_produce_file)

    load = sub.add_parser("load", help="batch loads")
    load_sub = load.add_subparsers(required=True, metavar="WHAT")
    traits = load_sub.add_parser("traits", help="traits from CSV or JSON lines (.gz ok)")
    traits.add_argument("path", type=Path)
    traits.add_argument(
        "--timestamp",
        help="when the traits were true, ISO-8601, for rows without their own (now)",
    )
    traits.add_argument("--rate", type=float, help="records per second (as fast as possible)")
    traits.set_defaults(run=run_load_traits)

    tail = sub.add_parser("tail", help="print offers as a consumer would, deduplicated by offer id")
    tail.add_argument("--from-beginning", action="store_true", help="not only new offers")
    tail.add_argument("--group", help="consumer group (commits its position); none by default")
    tail.add_argument("--count", type=int, help="stop after this many distinct offers")
    tail.add_argument("--idle", type=float, help="stop after this many seconds without a record")
    tail.add_argument("--json", action="store_true", help="print each offer's JSON record")
    tail.set_defaults(run=run_tail)

    report = sub.add_parser(
        "report", help="offers sent, open, redemption and conversion rates, uplift over holdout"
    )
    report.add_argument("--json", action="store_true", help="one JSON object per row")
    report.add_argument(
        "--png", type=Path, metavar="DIR",
        help="also write PNG charts here: the rates, and with KAIROS_PROMETHEUS_URL the "
        "dashboard's lag, funnel and latency panels",
    )  # fmt: skip
    report.add_argument(
        "--since", type=_duration, default="1h", metavar="RANGE",
        help="time range of the Prometheus charts, such as 15m, 6h or 2d (1h)",
    )  # fmt: skip
    report.set_defaults(run=run_report)
    eval_cli.add_commands(sub)

    reference = sub.add_parser("reference", help="update stores and products at runtime")
    reference_sub = reference.add_subparsers(required=True, metavar="ACTION")
    ref_load = reference_sub.add_parser(
        "load", help="send stores or products (a JSON list, or JSON lines) to the reference topic"
    )
    ref_load.add_argument("kind", choices=["stores", "products"])
    ref_load.add_argument("path", type=Path)
    ref_load.set_defaults(run=run_reference_load)

    topics = sub.add_parser("topics", help="manage the declared topics")
    topics_sub = topics.add_subparsers(required=True, metavar="ACTION")
    topics_sub.add_parser("create", help="create missing topics").set_defaults(
        run=run_topics_create
    )
    topics_sub.add_parser("list", help="list declared topics").set_defaults(run=run_topics_list)
    return parser


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.demo import DemoOptions, run

    options = DemoOptions(Population.from_args(args), args.offers_out)
    return run(settings, options)


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    import faust

    from agents.embedding import check_model
    from streams.exposure import api_exposure
    from streams.runtime.admin import missing_topics

    exposure = api_exposure(settings)
    if exposure.refusal:
        raise SettingsError(exposure.refusal)
    if exposure.warning:
        logging.getLogger("kairos").warning(exposure.warning)
    prepare_data_dir(settings)
    check_model(settings)  # before connecting anywhere
    missing = asyncio.run(missing_topics(settings))
    if missing:
        raise CommandError(
            "these topics do not exist: " + ", ".join(missing) + "; run `kairos topics create`"
        )
    from agents.worker import create_app

    app = create_app(settings).app
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    # Faust's terminal spinner turns logging up to DEBUG at levels above INFO,
    # which cost ~14% of the worker's CPU; a worker's output is a log anyway.
    worker.spinner = None
    # httpx logs every request at INFO: one line per LLM call is noise; the
    # metrics count them, and failures are logged by the offers agent.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Everything imported so far lives as long as the process: keep it out of
    # the collector's scans, and collect young objects less often (the hot
    # path allocates many short-lived dicts). Measured: fold cost halved.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    worker.execute_from_commandline()
    return 0


def run_broker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.errors import BrokerError
    from streams.tools.broker import start_embedded

    if not settings.embedded_broker:
        raise CommandError("KAIROS_BROKER_URL is set: nothing embedded to start")
    try:
        broker = start_embedded(settings)
    except BrokerError as exc:
        raise CommandError(str(exc)) from None
    return _serve(broker, f"broker ready on 127.0.0.1:{settings.broker_port}")


def run_llm(settings: Settings, args: argparse.Namespace) -> int:
    from models.server import LLMServerError, ensure_model, start_llm_server

    if not settings.embedded_llm:
        raise CommandError("KAIROS_LLM_URL is set: nothing embedded to start")
    logs = settings.data_dir / "logs"
    try:
        folder = ensure_model(settings, logs / "convert.log")
        if args.prepare:
            print(f"model ready in {folder}")
            return 0
        server = start_llm_server(settings, folder, logs / "llm.log")
    except LLMServerError as exc:
        raise CommandError(str(exc)) from None
    return _serve(
        server, f"LLM server ready at {settings.llm_base_url} (model {settings.llm_model})"
    )


def run_produce_synthetic(settings: Settings, args: argparse.Namespace) -> int:
    from streams.reference import load_reference
    from streams.tools.console import CountProgress
    from streams.tools.synthetic import plan

    planned = plan(load_reference(settings.reference_dir), Population.from_args(args))
    return _replay(settings, planned, CountProgress("synthetic", len(planned)))


def run_produce_file(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.console import CountProgress
    from streams.tools.producer import count_lines, plan_file

    if not args.path.is_file():
        raise CommandError(f"{args.path}: no such file")
    progress = CountProgress(args.path.name, count_lines(args.path))
    return _replay(settings, plan_file(args.path, args.source, args.rate), progress)


def run_load_traits(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from streams.tools.console import CountProgress
    from streams.tools.producer import count_lines, iso_now, plan_traits

    if not args.path.is_file():
        raise CommandError(f"{args.path}: no such file")
    if args.timestamp:
        try:
            datetime.fromisoformat(args.timestamp)
        except ValueError:
            raise CommandError(f"--timestamp {args.timestamp!r} is not an ISO-8601 time") from None
    rows = count_lines(args.path) - (1 if ".csv" in args.path.suffixes else 0)
    planned = plan_traits(args.path, args.timestamp or iso_now(), args.rate)
    return _replay(settings, planned, CountProgress(args.path.name, rows))


def _replay(settings: Settings, planned: Any, progress: Any) -> int:
    from streams.runtime.admin import connect_admin
    from streams.tools.producer import replay

    async def go() -> int:
        await (await connect_admin(settings)).close()  # a clear error if Kafka is not there
        return await replay(settings, planned, on_sent=progress)

    sent = asyncio.run(go())
    print(f"sent {sent} events to {settings.bootstrap_servers}")
    return 0


def run_tail(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime.admin import connect_admin
    from streams.tools.tail import tail

    async def go() -> tuple[int, int]:
        await (await connect_admin(settings)).close()  # a clear error if Kafka is not there
        return await tail(
            settings, lambda line: print(line, flush=True), from_beginning=args.from_beginning,
            group=args.group, count=args.count, idle_s=args.idle, as_json=args.json,
        )  # fmt: skip

    printed, duplicates = asyncio.run(go())
    print(f"{printed} offers, {duplicates} duplicates dropped", file=sys.stderr)
    return 0


def run_report(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime.admin import connect_admin
    from streams.tools.report import report, table

    async def go() -> list[Any]:
        await (await connect_admin(settings)).close()  # a clear error if Kafka is not there
        return await report(settings)

    rows = asyncio.run(go())
    if args.json:
        for row in rows:
            print(orjson.dumps(row.as_dict()).decode())
    else:
        print(table(rows))
    if args.png:
        _write_charts(settings, rows, args.png, args.since)
    return 0


def _duration(text: str) -> float:
    from streams.tools.charts import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _write_charts(settings: Settings, rows: list[Any], out: Path, since_s: float) -> None:
    from streams.tools.charts import render
    from streams.tools.report import chart

    out.mkdir(parents=True, exist_ok=True)
    chart(rows, out / "rates.png")
    print(f"wrote {out / 'rates.png'}: {len(rows)} rows", file=sys.stderr)
    if settings.prometheus_url is None:
        print("KAIROS_PROMETHEUS_URL is not set: no lag, funnel or latency chart", file=sys.stderr)
        return
    for drawn in render(settings.prometheus_url, out, since_s, time.time()):
        shown = ", ".join(f"{name} ({n} points)" for name, n in drawn.points.items())
        print(f"wrote {drawn.path}: {shown or 'no data'}", file=sys.stderr)


def run_reference_load(settings: Settings, args: argparse.Namespace) -> int:
    """Every row is checked first; one bad row and nothing is sent."""
    from streams.errors import ReferenceDataError
    from streams.reference import parse_product, parse_store, read_rows
    from streams.tools.producer import send_reference

    kind = "store" if args.kind == "stores" else "product"
    parse = parse_store if kind == "store" else parse_product
    try:
        rows = read_rows(args.path)
    except ReferenceDataError as exc:
        raise CommandError(str(exc)) from None
    problems = []
    for n, row in enumerate(rows, 1):
        try:
            parse(row)
        except ReferenceDataError as exc:
            problems.append(f"row {n}: {exc}")
    if problems:
        raise CommandError(f"{args.path}: nothing sent; " + "; ".join(problems[:10]))
    asyncio.run(send_reference(settings, kind, rows))
    print(f"sent {len(rows)} {args.kind} to {settings.topics.reference}")
    return 0


def run_topics_create(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime.admin import create_topics

    created = asyncio.run(create_topics(settings))
    print("created: " + ", ".join(created) if created else "all topics exist")
    return 0


def run_topics_list(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime.admin import missing_topics
    from streams.runtime.topics import topic_specs

    missing = set(asyncio.run(missing_topics(settings)))
    for spec in topic_specs(settings):
        state = "missing" if spec.name in missing else "exists"
        print(f"{spec.name:40} {spec.partitions:>4} partitions  {state}")
    return 0


def _serve(process: ManagedProcess, ready: str) -> int:
    """Keep ``process`` in the foreground until SIGINT/SIGTERM, or until it dies."""
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(ready, flush=True)
    while not stop and process.running:
        time.sleep(0.5)
    died = not process.running
    process.stop()
    if died:
        raise CommandError(f"{process.name} exited: {process.tail()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
