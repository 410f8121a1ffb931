"""The ingest service's broker app: document jobs and domain-event projection are wired here."""

from __future__ import annotations

from agentbus.runtime.service import Service, new_service

from . import __version__
from .settings import IngestSettings


def build(settings: IngestSettings) -> Service:
    service = new_service(
        "ingest",
        __version__,
        settings,
        description="Parses, chunks, embeds and stores documents; projects events into the graph",
    )
    service.checks.update(service.probes.checks("postgres", "graph"))
    return service
