"""`agentbus demo`: the sample organisation in or out (its logic lives in runtime/demo.py,
imported when the command runs: it brings the bus and graph clients)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .context import settings_of, with_platform_urls


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], tenant: str) -> None:
    demo = sub.add_parser("demo", help="load the sample organisation (documents and events)")
    demo.add_argument("--remove", action="store_true", help="take the sample out again")
    demo.add_argument("--tenant", default=tenant, help="tenant id (AGENTBUS_TENANT, dev)")
    demo.add_argument("--samples", type=Path, help="sample directory (default samples/acme)")
    demo.add_argument("--timeout", type=float, default=300.0)
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Load (or --remove) the sample organisation."""
    from .. import demo

    return demo.run(args, with_platform_urls(settings_of(args)))
