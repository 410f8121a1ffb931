"""`agentbus`: run and inspect the platform from a terminal. One module per concern:

- `lifecycle`: `up [--detach] [--sample] [--config PATH]`, `down`, `status [--json]`
- `documents`: `ingest PATH...`, `search QUERY`
- `ask`: `ask QUESTION` through the gateway, streamed
- `sample`: `demo [--remove]`, the sample organisation
- `traces`: `traces TRACE_ID | --run | --last | --list`
- `asyncapi`: `asyncapi SERVICE`
- commands installed service packages contribute by entry point (`agentbus.commands`;
  analytics adds `eval`)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import __version__
from ..service_entry import CommandContext, add_contributed_commands
from ..settings import ConfigError
from . import ask, asyncapi, documents, lifecycle, sample, traces
from .asyncapi import asyncapi_document
from .context import settings_of, with_platform_urls

__all__ = ["asyncapi_document", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentbus", description="Agentbus platform CLI")
    parser.add_argument("--version", action="version", version=f"agentbus {__version__}")
    parser.add_argument("--data-dir", type=Path, help="data directory (AGENTBUS_DATA_DIR, var/)")
    sub = parser.add_subparsers(dest="command", required=True)
    tenant = os.environ.get("AGENTBUS_TENANT", "dev")
    lifecycle.add_parsers(sub)
    documents.add_parsers(sub, tenant)
    ask.add_parser(sub)
    sample.add_parser(sub, tenant)
    traces.add_parser(sub)
    add_contributed_commands(sub, CommandContext(settings_of, with_platform_urls, tenant))
    asyncapi.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 2
    return code
