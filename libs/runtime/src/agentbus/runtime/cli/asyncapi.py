"""`agentbus asyncapi <service>`: a service's AsyncAPI document, generated from its code."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentbus.contracts import SERVICES

from ..service_entry import ServiceNotInstalled, service_entry


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    spec = sub.add_parser("asyncapi", help="print a service's AsyncAPI document (from its code)")
    spec.add_argument("service", choices=list(SERVICES))
    spec.set_defaults(func=cmd_asyncapi)


def asyncapi_document(service: str) -> dict[str, Any]:
    """The AsyncAPI document of an installed service, generated from its FastStream broker."""
    return service_entry(service).asyncapi()


def cmd_asyncapi(args: argparse.Namespace) -> int:
    import json

    try:
        document = asyncapi_document(args.service)
    except ServiceNotInstalled as exc:
        print(f"agentbus: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2))
    return 0
