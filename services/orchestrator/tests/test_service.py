"""The orchestrator over the real bus: starts, provisions, answers health, stops cleanly."""

from __future__ import annotations

import nats

from agentbus.contracts import CONSUMERS
from agentbus.orchestrator.app import build
from agentbus.orchestrator.settings import OrchestratorSettings
from agentbus.runtime.testing import ask_health, running


async def test_starts_reports_health_and_stops(service_env: dict[str, str]) -> None:
    service = build(OrchestratorSettings())
    async with running(service):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        try:
            health = await ask_health(nc, "orchestrator")
            assert health.service == "orchestrator"
            assert health.ok, health
            assert set(health.checks) == {"nats", "postgres"}
            ping = await nc.request("$SRV.PING.agentbus-orchestrator", b"", timeout=5)
            assert b'"agentbus-orchestrator"' in ping.data
            js = nc.jetstream()
            for consumer in CONSUMERS:
                if consumer.service == "orchestrator":
                    info = await js.consumer_info(consumer.stream, consumer.durable)
                    assert info.config.max_deliver == consumer.max_deliver
        finally:
            await nc.close()
    # Stopped as on SIGTERM: the broker drained and closed its connection.
    assert service.broker._connection is None
