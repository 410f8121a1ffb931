"""The retrieval service's broker app: search and graph request handlers are wired here."""

from __future__ import annotations

from agentbus.runtime.service import Service, new_service

from . import __version__
from .settings import RetrievalSettings


def build(settings: RetrievalSettings) -> Service:
    service = new_service(
        "retrieval",
        __version__,
        settings,
        description="Hybrid search over pgvector chunks and named knowledge-graph queries",
    )
    service.checks.update(service.probes.checks("postgres", "graph"))
    return service
