"""Named, read-only analytics queries over the event store."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import TenantContract

# `recorded_runs` lists finished runs with their question and answer (for evaluations);
# `evaluations` summarises stored evaluation scores; `run_evaluations` gives each run's scores.
AnalyticsQueryName = Literal[
    "usage", "runs", "dora", "anomalies", "recorded_runs", "evaluations", "run_evaluations"
]
Scalar = str | int | float | bool | None


class AnalyticsQuery(TenantContract):
    """A named query with validated parameters. Never SQL text from a caller or a model."""

    name: AnalyticsQueryName
    params: dict[str, Scalar] = Field(default_factory=dict)


class AnalyticsResult(TenantContract):
    name: AnalyticsQueryName
    columns: list[str] = Field(default_factory=list)
    rows: list[list[Scalar]] = Field(default_factory=list)
    took_ms: float = Field(default=0.0, ge=0)
    error: str | None = None


class DeleteEvents(TenantContract):
    """Delete the tenant's domain events whose id starts with `id_prefix` from analytics.

    For taking out what one outside system loaded with ids of its own choosing (`agentbus demo
    --remove`: the sample's ids start with `sample-`); other events of the tenant stay.
    """

    id_prefix: str = Field(min_length=3, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


class EventsDeleted(TenantContract):
    """How many stored events matched and were deleted (0 when none did)."""

    deleted: int = Field(default=0, ge=0)
    error: str | None = None
