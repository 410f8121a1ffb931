"""What a service package offers the chassis, found by entry point, so the runtime never imports
a service (issue 12): each package names its `ServiceEntry` in the group `agentbus.services`
(its `__main__.SERVICE`), and may add CLI commands in the group `agentbus.commands` (analytics
adds `agentbus eval`). A wheel without the service simply has no entry for it.

Command modules stay light (argparse only, the work imported when the command runs): the CLI
loads every one of them to build its parser.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from agentbus.contracts import ServiceName

from .settings import Settings, load

if TYPE_CHECKING:
    from .chassis import Service

# A service's settings class (what `service.main` takes); the chassis itself is imported only
# when a service runs, so the CLI starts without it.
S = TypeVar("S", bound=Settings)

SERVICES_GROUP = "agentbus.services"
COMMANDS_GROUP = "agentbus.commands"


class ServiceNotInstalled(LookupError):
    pass


@dataclass(frozen=True)
class ServiceEntry(Generic[S]):
    name: ServiceName
    version: str
    settings: type[S]
    build: Callable[[S], Service]

    def run(self) -> None:
        """`python -m agentbus.<name>`."""
        from .chassis import main

        main(self.name, self.version, self.settings, self.build)

    def asyncapi(self) -> dict[str, Any]:
        """The service's AsyncAPI document, generated from its FastStream broker."""
        built = self.build(load(self.settings))
        document: dict[str, Any] = json.loads(built.asyncapi().to_specification().to_json())
        return document


def service_entry(name: str) -> ServiceEntry[Any]:
    """The installed service `name` (only its package is imported)."""
    for point in entry_points(group=SERVICES_GROUP, name=name):
        entry = point.load()
        if not isinstance(entry, ServiceEntry) or entry.name != name:
            raise TypeError(f"entry point {point.value} is not the ServiceEntry of {name}")
        return entry
    raise ServiceNotInstalled(f"the {name} service is not installed (no agentbus-{name})")


@dataclass(frozen=True)
class CommandContext:
    """What the CLI lends a contributed command."""

    # Settings with `--data-dir` applied.
    settings: Callable[[argparse.Namespace], Settings]
    # Settings pointed at the engines of a platform running from the data dir.
    with_platform_urls: Callable[[Settings], Settings]
    # The default tenant (AGENTBUS_TENANT, else dev).
    tenant: str


# Adds its subcommands to the `agentbus` parser.
AddCommands = Callable[
    ["argparse._SubParsersAction[argparse.ArgumentParser]", CommandContext], None
]


def add_contributed_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], ctx: CommandContext
) -> None:
    for point in sorted(entry_points(group=COMMANDS_GROUP), key=lambda p: p.name):
        add: AddCommands = point.load()
        add(sub, ctx)
