"""The retrieval service over the real bus: starts, provisions, answers health and stops cleanly."""

from __future__ import annotations

import asyncio

import httpx
import nats
import pytest

from agentbus.contracts import CONSUMERS
from agentbus.retrieval.app import build
from agentbus.retrieval.settings import RetrievalSettings
from agentbus.runtime.engines import free_port
from agentbus.runtime.testing import ask_health, running


async def test_starts_reports_health_and_stops(service_env: dict[str, str]) -> None:
    service = build(RetrievalSettings())
    async with running(service):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        try:
            health = await ask_health(nc, "retrieval")
            assert health.service == "retrieval"
            assert health.ok, health
            assert set(health.checks) == {"nats", "postgres", "graph"}
            ping = await nc.request("$SRV.PING.agentbus-retrieval", b"", timeout=5)
            assert b'"agentbus-retrieval"' in ping.data
            js = nc.jetstream()
            for consumer in CONSUMERS:
                if consumer.service == "retrieval":
                    info = await js.consumer_info(consumer.stream, consumer.durable)
                    assert info.config.max_deliver == consumer.max_deliver
        finally:
            await nc.close()
    # Stopped as on SIGTERM: the broker drained and closed its connection.
    assert service.broker._connection is None


async def test_ops_port_serves_probes_and_metrics(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("AGENTBUS_OPS_PORT", str(port))
    service = build(RetrievalSettings())
    async with running(service), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/healthz")).json() == {"status": "ok", "service": "retrieval"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["graph"]["ok"] is True
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert "text/plain" in metrics.headers["content-type"]
        assert (await http.get("/nope")).status_code == 404
        refused = await http.post("/healthz")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET"
        # Probes on one keep-alive connection (Kubernetes' kubelet reuses them).
        for _ in range(3):
            assert (await http.get("/healthz?verbose=1")).status_code == 200
        # Not HTTP at all: uvicorn answers 400 and the port keeps serving.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01 not http\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 400")
        writer.close()
        assert (await http.get("/healthz")).status_code == 200
    # Stopped with the service: the port no longer answers.
    with pytest.raises(httpx.ConnectError):
        await httpx.AsyncClient().get(f"http://127.0.0.1:{port}/healthz")
