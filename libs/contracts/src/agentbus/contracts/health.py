"""Service health, answered on agentbus.v1.health.<service> by every service.

Platform-level, not tenant data: the one contract without a tenant_id.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Contract, Timestamp, utcnow

ServiceName = Literal["gateway", "orchestrator", "retrieval", "ingest", "analytics"]
SERVICES: tuple[ServiceName, ...] = ("gateway", "orchestrator", "retrieval", "ingest", "analytics")


class ComponentHealth(Contract):
    ok: bool
    detail: str = ""
    latency_ms: float | None = None


class ServiceHealth(Contract):
    service: ServiceName
    version: str
    instance: str = Field(description="Process identity, e.g. host:pid")
    ok: bool
    checks: dict[str, ComponentHealth] = Field(
        default_factory=dict, description="Engines this service depends on"
    )
    ts: Timestamp = Field(default_factory=utcnow)
