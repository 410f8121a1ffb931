"""`agentbus eval`: the CLI front end of evaluations (registered in agentbus.runtime.cli).

agentbus eval [--since 24h] [--metric NAME ...] [--no-report] [--out FILE] [--json]
              [--tenant T] [--limit N] [--model M]

Progress goes to stderr; stdout gets the per-metric table, or the report as JSON with --json.
Exit codes: 0 every run scored, 1 some run x metric could not be judged, 2 nothing was done
(bad option, no analytics, bad metric file).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

from agentbus.contracts import new_id, utcnow
from agentbus.runtime.chassis import StartupError, connect_once
from agentbus.runtime.settings import Settings, load

from .judges import Judge, JudgeError, choose_judge, orchestrator_models_config
from .loader import MetricFileError, load_metrics, select
from .runner import MAX_RUNS, EvalError, EvalReport, evaluate, fetch_runs
from .settings import EvalSettings

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_HOURS = {"s": 1 / 3600, "m": 1 / 60, "h": 1.0, "d": 24.0, "w": 168.0}
MAX_SINCE_HOURS = 366 * 24


class UsageError(ValueError):
    pass


def parse_since(text: str) -> float:
    """`90m`, `24h`, `7d`, `2w` (also `1.5h`) as hours."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(
            f"invalid duration {text!r}: use a number and a unit s, m, h, d or w (90m, 24h, 7d)"
        )
    hours = float(match.group(1)) * _HOURS[match.group(2).lower()]
    if not 0 < hours <= MAX_SINCE_HOURS:
        raise UsageError(f"duration {text!r} must be more than 0 and at most 366d")
    return hours


def bar(done: int, total: int, width: int = 24) -> str:
    filled = round(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _progress(done: int, total: int) -> None:
    line = f"judging {bar(done, total)} {done}/{total} runs"
    end = "\n" if done == total else ""
    print("\r" + line.ljust(60), end=end, file=sys.stderr, flush=True)


def table(report: EvalReport, report_path: Path | None) -> str:
    lines = [f"{'metric':<16} {'judge':<10} {'runs':>5} {'mean':>6} {'min':>6} {'max':>6}  errors"]
    for m in report.metrics:

        def fmt(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        lines.append(
            f"{m.name:<16} {m.judge:<10} {m.runs:>5} {fmt(m.mean_score):>6} "
            f"{fmt(m.min_score):>6} {fmt(m.max_score):>6}  {m.errors}"
        )
    lines.append("")
    lines.append(
        f"evaluation {report.evaluation_id}: {len(report.runs)} runs scored, "
        f"{len(report.skipped)} skipped, {len(report.errors)} errors, "
        f"{report.published} scores stored (tenant {report.tenant_id})"
    )
    lines.append(f"judge: {report.judge.note}")
    for problem in report.errors[:5]:
        lines.append(f"error: run {problem.run_id} {problem.metric}: {problem.reason}")
    if report_path is not None:
        lines.append(f"report: {report_path}")
    return "\n".join(lines)


def report_file(settings: EvalSettings, report: EvalReport, out: Path | None) -> Path:
    if out is not None:
        path = out
    else:
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        path = settings.data_dir / "evals" / f"{stamp}-{report.evaluation_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.model_dump_json(indent=2) + "\n")
    return path


async def _run(
    settings: EvalSettings, args: argparse.Namespace, judge: Judge, since_hours: float
) -> EvalReport:
    metrics = select(load_metrics(settings.eval_metrics_dir), args.metric)
    nc = await connect_once(settings)
    try:
        runs, unreadable = await fetch_runs(nc, args.tenant, since_hours, args.limit, args.timeout)
        if len(runs) + len(unreadable) >= args.limit:
            print(
                f"agentbus: only the latest {args.limit} runs (raise --limit, max {MAX_RUNS})",
                file=sys.stderr,
            )
        report = await evaluate(
            nc,
            tenant_id=args.tenant,
            since_hours=since_hours,
            runs=runs,
            metrics=metrics,
            judge=judge,
            evaluation_id=args.evaluation_id or new_id(),
            concurrency=settings.eval_concurrency,
            timeout=args.timeout,
            progress=_progress if runs else None,
        )
    finally:
        await nc.close()
    report.skipped.extend(unreadable)
    return report


def run_eval(args: argparse.Namespace, with_platform_urls: Callable[[Settings], Settings]) -> int:
    """The `agentbus eval` command; `with_platform_urls` points settings at a running platform."""
    try:
        since_hours = parse_since(args.since)
        if not 1 <= args.limit <= MAX_RUNS:
            raise UsageError(f"--limit must be 1..{MAX_RUNS}, got {args.limit}")
        # model_copy inside keeps the class: these are still EvalSettings.
        settings = cast(EvalSettings, with_platform_urls(load(EvalSettings)))
        models_config = settings.models_config or orchestrator_models_config()
        judge = choose_judge(args.model or settings.eval_model, models_config)
        report = asyncio.run(_run(settings, args, judge, since_hours))
    except (UsageError, MetricFileError, JudgeError, EvalError, StartupError) as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 2
    path = None if args.no_report else report_file(settings, report, args.out)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        if not report.runs and not report.skipped:
            print(f"no recorded runs in the last {args.since} for tenant {args.tenant}")
        print(table(report, path))
    return 1 if report.errors else 0
