"""`agentbus eval`, contributed to the CLI by entry point (group `agentbus.commands`). Only the
parser is here: the evaluation itself is imported when the command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from agentbus.runtime.service_entry import CommandContext


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], ctx: CommandContext
) -> None:
    def cmd_eval(args: argparse.Namespace) -> int:
        ctx.settings(args)  # applies --data-dir
        from .command import run_eval

        return run_eval(args, ctx.with_platform_urls)

    ev = sub.add_parser("eval", help="score recorded runs with the evaluation metrics (judge)")
    ev.add_argument("--since", default="24h", help="runs of this last period: 90m, 24h, 7d")
    ev.add_argument(
        "--metric", action="extend", nargs="+", metavar="NAME", help="only these metrics"
    )
    ev.add_argument("--no-report", action="store_true", help="do not write the JSON report")
    ev.add_argument("--out", type=Path, help="report file (default <data dir>/evals/...json)")
    ev.add_argument("--json", action="store_true", help="print the report as JSON")
    ev.add_argument("--tenant", default=ctx.tenant, help="tenant id (AGENTBUS_TENANT, dev)")
    ev.add_argument("--limit", type=int, default=100, help="at most this many runs (1..1000)")
    ev.add_argument("--model", help="judge model (AGENTBUS_EVAL_MODEL, default group deep)")
    ev.add_argument("--evaluation-id", help="reuse an id to retry without double-storing")
    ev.add_argument("--timeout", type=float, default=30.0)
    ev.set_defaults(func=cmd_eval)
