"""The analytics service's broker app: event consumers and query handlers are wired here."""

from __future__ import annotations

import asyncio

from agentbus.contracts import ComponentHealth
from agentbus.runtime.health import timed
from agentbus.runtime.service import Service, StartupError, new_service

from . import __version__
from .settings import AnalyticsSettings
from .store import ClickHouseStore


def build(settings: AnalyticsSettings) -> Service:
    service = new_service(
        "analytics",
        __version__,
        settings,
        description="Stores domain events and telemetry in ClickHouse; answers named queries",
    )
    store = ClickHouseStore(settings.clickhouse_dsn)

    async def open_store() -> None:
        try:
            await asyncio.to_thread(store.open)
        except Exception as exc:
            raise StartupError(
                f"cannot open ClickHouse at {settings.clickhouse_dsn}: {str(exc).splitlines()[0]}"
            ) from None

    async def close_store() -> None:
        await asyncio.to_thread(store.close)

    async def check_clickhouse() -> ComponentHealth:
        return await timed(store.version, settings.health_timeout_s)

    service.on_startup.append(open_store)
    service.on_shutdown.append(close_store)
    # Analytics owns the ClickHouse connection, so it reports ClickHouse for the platform.
    service.checks["clickhouse"] = check_clickhouse
    return service
