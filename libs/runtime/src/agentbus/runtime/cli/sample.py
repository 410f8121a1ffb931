"""`agentbus demo`: the sample organisation in or out (its logic lives in runtime/demo.py)."""

from __future__ import annotations

import argparse

from .context import settings_of, with_platform_urls


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], tenant: str) -> None:
    from ..demo import add_parser as add_demo_parser

    add_demo_parser(sub, tenant).set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Load (or --remove) the sample organisation; the logic lives in demo.py."""
    from .. import demo

    return demo.run(args, with_platform_urls(settings_of(args)))
