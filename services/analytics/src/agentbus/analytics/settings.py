"""Analytics settings (`AGENTBUS_*`): ClickHouse DSN is the shared `clickhouse_dsn`."""

from __future__ import annotations

from pydantic import Field

from agentbus.runtime.settings import Settings


class AnalyticsSettings(Settings):
    # Rows are buffered per consumer and inserted when either limit is reached: big batches are
    # what ClickHouse wants (one part per insert), the interval bounds how stale queries can be.
    # At most the consumers' max_ack_pending (10,000) messages can wait unacked at once.
    analytics_batch_size: int = Field(
        default=2000, ge=1, le=10_000, description="Rows per ClickHouse insert, at most"
    )
    analytics_flush_interval_s: float = Field(
        default=1.0, gt=0, le=3600, description="Longest a stored event waits for its insert"
    )
