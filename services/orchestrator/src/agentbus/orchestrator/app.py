"""The orchestrator's broker app: what it consumes and publishes is wired here."""

from __future__ import annotations

from agentbus.runtime.service import Service, new_service

from . import __version__
from .settings import OrchestratorSettings


def build(settings: OrchestratorSettings) -> Service:
    service = new_service(
        "orchestrator",
        __version__,
        settings,
        description="Executes LangGraph runs from the RUNS work queue and streams their events",
    )
    # Postgres holds the LangGraph checkpoints.
    service.checks.update(service.probes.checks("postgres"))
    return service
