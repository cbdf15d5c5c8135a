"""The command line of ``kairos eval`` and ``kairos dataset export``.

    kairos eval            prompt variants and models judged on recorded moments (a table;
                           --json for one object per variant)
    kairos dataset export  each moment's point-in-time features and its outcomes, as JSON lines

Like the rest of the command line, nothing heavy is imported until a
command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from pathlib import Path
from typing import Any

import orjson

from streams.errors import CommandError
from streams.settings import Settings


def _slots(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 1024, got {text}")
    return value


# The longest --timeout: an hour per request is already more than any model
# here needs (SmolLM2 on a loaded 2-core machine took up to 30 s).
MAX_TIMEOUT_S = 3600.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT_S:  # NaN fails this too
        raise argparse.ArgumentTypeError(
            f"expected seconds above 0 and at most {MAX_TIMEOUT_S:g}, got {text!r}"
        )
    return value


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(
            f"expected an http(s) URL such as http://vllm:8000/v1, got {text!r}"
        )
    return text.rstrip("/")


def add_commands(sub: Any) -> None:
    """``eval`` and ``dataset`` on the ``kairos`` parser's subcommands."""
    ev = sub.add_parser("eval", help="judge prompt variants and models on recorded moments")
    ev.add_argument(
        "--from-file",
        type=Path,
        metavar="FILE",
        help="moments as JSON lines (`kairos dataset export`), not the moments topic",
    )
    ev.add_argument("--endpoint", type=_url, help="an OpenAI-compatible base URL (the worker's)")
    ev.add_argument(
        "--model",
        action="append",
        default=[],
        help="a model to ask; repeat for several (the worker's)",
    )
    ev.add_argument(
        "--variant",
        action="append",
        default=[],
        help="a variant to run: shipped (a, b) or from a --variant-file; repeat "
        "(every shipped and file variant)",
    )
    ev.add_argument(
        "--variant-file",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a new variant as YAML or JSON (streams/tools/variants.py); repeat",
    )
    ev.add_argument(
        "--concurrency", type=_slots, help="requests open at once (KAIROS_LLM_MAX_IN_FLIGHT)"
    )
    ev.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="deadline per request, retries included (KAIROS_LLM_TIMEOUT_S)",
    )
    ev.add_argument("--type", help="only moments of this type")
    ev.add_argument("--limit", type=_positive, help="only the latest N moments")
    ev.add_argument("--json", action="store_true", help="one JSON object per variant and model")
    ev.set_defaults(run=run_eval)

    dataset = sub.add_parser("dataset", help="datasets from the recorded moments")
    dataset_sub = dataset.add_subparsers(required=True, metavar="ACTION")
    export = dataset_sub.add_parser(
        "export", help="each moment's point-in-time features and outcomes, as JSON lines"
    )
    export.add_argument("--out", type=Path, metavar="FILE", help="write here (standard output)")
    export.add_argument("--type", help="only moments of this type")
    export.add_argument(
        "--no-profile",
        action="store_true",
        help="leave out the profile snapshots (eval needs them)",
    )
    export.set_defaults(run=run_dataset_export)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text}")
    return value


def _moment_type(name: str | None) -> None:
    from agents.moment_types import MOMENT_TYPES

    if name is not None and name not in MOMENT_TYPES:
        known = ", ".join(MOMENT_TYPES)
        raise CommandError(f"--type {name!r}: no such moment type; known: {known}")


def run_eval(settings: Settings, args: argparse.Namespace) -> int:
    from agents.rules import load_rules
    from streams.reference import ReferenceData
    from streams.tools import evaluate
    from streams.tools.scores import table
    from streams.tools.variants import choose

    _moment_type(args.type)
    options = evaluate.Options(
        endpoint=args.endpoint or settings.llm_base_url,
        models=list(dict.fromkeys(args.model)) or [settings.llm_model],
        variants=choose(args.variant, args.variant_file),
        concurrency=args.concurrency or settings.llm_max_in_flight,
        timeout_s=args.timeout,
    )
    rules = load_rules(settings.rules_file)
    if args.from_file is not None:
        records = evaluate.read_lines(args.from_file)
        reference = ReferenceData(settings.reference_dir)
    else:
        records, reference = asyncio.run(_recorded(settings))
    chosen, skipped = evaluate.cases(records, reference, rules, settings, args.type, args.limit)
    left_out = ", ".join(f"{why}: {n}" for why, n in skipped.items())
    if not chosen:
        raise CommandError("no moments to judge" + (f" (left out: {left_out})" if left_out else ""))
    print(
        f"judging {len(chosen)} moments" + (f" (left out: {left_out})" if left_out else ""),
        file=sys.stderr,
    )
    rows = asyncio.run(evaluate.run(settings, rules, reference, chosen, options))
    if args.json:
        for row in rows:
            print(orjson.dumps(row.as_dict()).decode())
    else:
        print(table(rows))
    return 0


async def _recorded(settings: Settings) -> Any:
    from streams.runtime.admin import connect_admin
    from streams.tools.evaluate import recorded

    await (await connect_admin(settings)).close()  # a clear error if Kafka is not there
    return await recorded(settings)


def run_dataset_export(settings: Settings, args: argparse.Namespace) -> int:
    from streams.runtime.admin import connect_admin
    from streams.tools.dataset import export, write

    _moment_type(args.type)

    async def go() -> list[dict[str, Any]]:
        await (await connect_admin(settings)).close()  # a clear error if Kafka is not there
        return await export(settings, args.type, with_profile=not args.no_profile)

    lines = asyncio.run(go())
    write(lines, args.out, sys.stdout.buffer)
    with_outcomes = sum(1 for line in lines if line["outcomes"])
    where = args.out or "standard output"
    print(
        f"{len(lines)} moments ({with_outcomes} with outcomes) written to {where}", file=sys.stderr
    )
    return 0
