"""What the public port tells anyone (issue 13, point 5): readiness says ready or not, the
detail (versions, instances, error text) needs the operator token, and /metrics and the API
docs can be taken off the public port (metrics then on the ops port)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from agentbus.gateway.app import build
from agentbus.gateway.settings import GatewaySettings
from agentbus.runtime.engines import free_port
from agentbus.runtime.testing import running

TOKEN = "operator-token-for-the-readiness-detail"


@pytest.fixture
async def gateway(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, int]]:
    ops = free_port()
    for key, value in {
        "AGENTBUS_READINESS_DETAIL": "operator",
        "AGENTBUS_OPERATOR_TOKEN": TOKEN,
        "AGENTBUS_PUBLIC_METRICS": "false",
        "AGENTBUS_PUBLIC_DOCS": "false",
        "AGENTBUS_OPS_PORT": str(ops),
    }.items():
        monkeypatch.setenv(key, value)
    settings = GatewaySettings()
    base = f"http://127.0.0.1:{settings.gateway_port}"
    async with running(build(settings)), httpx.AsyncClient(base_url=base, timeout=30) as http:
        yield http, ops


async def test_public_readiness_says_only_ready_or_not(
    gateway: tuple[httpx.AsyncClient, int],
) -> None:
    http, _ = gateway
    public = await http.get("/readyz")
    # Only the gateway runs here: not ready, and nothing else is said.
    assert public.status_code == 503
    assert public.json() == {"ready": False}
    wrong = await http.get("/readyz", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.json() == {"ready": False}
    detail = await http.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert detail.status_code == 503
    body = detail.json()
    assert body["ready"] is False and "orchestrator" in body["not_ready"]
    assert body["services"]["gateway"]["ok"] is True


async def test_metrics_and_docs_can_leave_the_public_port(
    gateway: tuple[httpx.AsyncClient, int],
) -> None:
    http, ops = gateway
    for path in ("/metrics/", "/docs", "/openapi.json", "/redoc"):
        assert (await http.get(path)).status_code == 404, path
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = await client.get(f"http://127.0.0.1:{ops}/metrics")
    assert metrics.status_code == 200 and "agentbus" in metrics.text
