"""The analytics service over the real bus with embedded ClickHouse (chDB)."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from agentbus.analytics.app import build
from agentbus.analytics.settings import AnalyticsSettings
from agentbus.runtime.service import StartupError
from agentbus.runtime.testing import ask_health, running


async def test_reports_clickhouse_health_and_stops(service_env: dict[str, str]) -> None:
    service = build(AnalyticsSettings())
    async with running(service):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        try:
            health = await ask_health(nc, "analytics")
        finally:
            await nc.close()
    assert health.ok, health
    assert set(health.checks) == {"nats", "clickhouse"}
    assert "chDB (embedded)" in health.checks["clickhouse"].detail
    assert service.broker._connection is None
    chdb_dir = Path(service_env["AGENTBUS_DATA_DIR"]) / "clickhouse"
    assert chdb_dir.is_dir()  # data lives under the data dir


async def test_unreachable_clickhouse_server_fails_start_up(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentbus.runtime.engines import free_port

    monkeypatch.setenv("AGENTBUS_CLICKHOUSE_DSN", f"http://127.0.0.1:{free_port()}")
    service = build(AnalyticsSettings())
    with pytest.raises(StartupError, match=r"cannot open ClickHouse at http://127\.0\.0\.1"):
        async with running(service):
            pass
