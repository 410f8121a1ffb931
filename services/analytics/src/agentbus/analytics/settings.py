"""Analytics settings (`AGENTBUS_*`): ClickHouse DSN is the shared `clickhouse_dsn`."""

from __future__ import annotations

from agentbus.runtime.settings import Settings


class AnalyticsSettings(Settings):
    pass
