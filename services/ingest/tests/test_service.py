"""The ingest service over the real bus: starts, provisions, answers health and stops cleanly."""

from __future__ import annotations

import nats

from agentbus.contracts import CONSUMERS
from agentbus.ingest.app import build
from agentbus.ingest.settings import IngestSettings
from agentbus.runtime.testing import ask_health, running


async def test_starts_reports_health_and_stops(service_env: dict[str, str]) -> None:
    service = build(IngestSettings())
    async with running(service):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        try:
            health = await ask_health(nc, "ingest")
            assert health.service == "ingest"
            assert health.ok, health
            assert set(health.checks) == {"nats", "postgres", "graph"}
            ping = await nc.request("$SRV.PING.agentbus-ingest", b"", timeout=5)
            assert b'"agentbus-ingest"' in ping.data
            js = nc.jetstream()
            for consumer in CONSUMERS:
                if consumer.service == "ingest":
                    info = await js.consumer_info(consumer.stream, consumer.durable)
                    assert info.config.max_deliver == consumer.max_deliver
        finally:
            await nc.close()
    # Stopped as on SIGTERM: the broker drained and closed its connection.
    assert service.broker._connection is None
