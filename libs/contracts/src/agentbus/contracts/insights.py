"""The engineering-intelligence assistant's own messages: questions over the event data as a
read-only SQL query (request/reply to analytics), and anomaly alerts published on the bus.

`AnalyticsSql` is the one place SQL text crosses the bus. Analytics never runs it as sent: it
parses it, accepts one SELECT over allow-listed tables and functions only, rewrites every table
into that table filtered to the request's tenant, and bounds rows and time (see analytics'
`sql_guard`). What it ran comes back in `SqlResult.sql`, so the query can be shown to the user.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from .base import Event, TenantContract
from .subjects import PREFIX, token

ANALYTICS_SQL: Final = f"{PREFIX}.analytics.sql"
# Alerts carry their tenant in the subject, so an outside subscriber's credentials can be bound
# to one tenant: agentbus.v1.alerts.anomaly.<tenant>.
ALERTS_ANOMALY_ALL: Final = f"{PREFIX}.alerts.anomaly.*"
ALERTS_ALL: Final = f"{PREFIX}.alerts.>"

Scalar = str | int | float | bool | None


def anomaly_alert(tenant_id: str) -> str:
    return f"{PREFIX}.alerts.anomaly.{token(tenant_id, 'tenant id')}"


class AnalyticsSql(TenantContract):
    """One SELECT over the analytics tables. The tenant filter is added by analytics."""

    sql: str = Field(min_length=1, max_length=4000)
    max_rows: int = Field(default=100, ge=1, le=1000)
    # Where the query came from (e.g. the question a text-to-query tool translated); for traces.
    question: str | None = Field(default=None, max_length=2000)


class SqlResult(TenantContract):
    """The rows of an `AnalyticsSql`, or why it was refused (`rejected`) or failed (`error`)."""

    sql: str = Field(default="", description="The tenant-scoped query analytics ran")
    columns: list[str] = Field(default_factory=list)
    rows: list[list[Scalar]] = Field(default_factory=list)
    truncated: bool = False
    took_ms: float = Field(default=0.0, ge=0)
    rejected: str | None = None
    error: str | None = None


class AnomalyDetected(Event):
    """A day whose value of a metric series is far from its baseline (robust z-score)."""

    series: str = Field(min_length=1, max_length=128)
    day: str = Field(description="The day, YYYY-MM-DD (UTC)")
    value: float
    baseline_median: float | None = None
    # None when the baseline is constant (no spread to measure the distance by).
    z: float | None = None
    direction: Literal["high", "low"]
    detected_by: str = Field(default="anomaly_scan", max_length=128)
    run_id: str | None = Field(default=None, max_length=128)
