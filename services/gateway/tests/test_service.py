"""The gateway over the real bus and real HTTP: liveness, readiness naming what is missing."""

from __future__ import annotations

import httpx

from agentbus.gateway.app import build
from agentbus.gateway.settings import GatewaySettings
from agentbus.runtime.testing import running


async def test_healthz_readyz_and_error_shape(service_env: dict[str, str]) -> None:
    settings = GatewaySettings()
    service = build(settings)
    base = f"http://127.0.0.1:{settings.gateway_port}"
    async with running(service), httpx.AsyncClient(base_url=base, timeout=30) as http:
        alive = await http.get("/healthz")
        assert alive.status_code == 200
        assert alive.json()["service"] == "gateway"

        ready = await http.get("/readyz")
        body = ready.json()
        # Engines are up, but the other four services are not running in this test.
        assert ready.status_code == 503
        assert body["ready"] is False
        assert sorted(body["not_ready"]) == sorted(
            ["orchestrator", "retrieval", "ingest", "analytics", "clickhouse"]
        ), body
        assert body["services"]["gateway"]["ok"] is True, body
        for engine in ("nats", "postgres", "graph"):
            assert body["engines"][engine]["ok"] is True, body["engines"][engine]
        assert "analytics" in body["engines"]["clickhouse"]["detail"]

        missing = await http.get("/no/such/route")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "Not Found"}

        metrics = await http.get("/metrics/")
        assert metrics.status_code == 200

        # Interactive docs, from an OpenAPI document that names every public route.
        docs = await http.get("/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = (await http.get("/openapi.json")).json()
        assert spec["openapi"].startswith("3.")
        for path, method in (
            ("/api/v1/auth/register", "post"),
            ("/api/v1/auth/login", "post"),
            ("/api/v1/threads", "post"),
            ("/api/v1/chat/stream", "post"),
            ("/api/v1/runs/{run_id}/stream", "get"),
            ("/api/v1/documents", "post"),
            ("/api/v1/documents/{document_id}", "delete"),
            ("/api/v1/api-keys", "post"),
        ):
            assert method in spec["paths"].get(path, {}), (path, method)
        # The native chat and document routes document their answers, not a bare object.
        for path, method, status, model in (
            ("/api/v1/chat", "post", "200", "ChatAnswer"),
            ("/api/v1/threads", "get", "200", "ThreadPage"),
            ("/api/v1/threads/{thread_id}", "get", "200", "Thread"),
            ("/api/v1/threads/{thread_id}/messages", "get", "200", "ThreadMessages"),
            ("/api/v1/documents", "post", "202", "UploadAccepted"),
            ("/api/v1/documents", "get", "200", "DocumentPage"),
            ("/api/v1/documents/{document_id}", "get", "200", "Document"),
        ):
            answer = spec["paths"][path][method]["responses"][status]["content"]
            ref = answer["application/json"]["schema"]["$ref"]
            assert ref == f"#/components/schemas/{model}", (path, method, ref)
        # Tokens and API keys are documented as security schemes, so /docs can authorize.
        assert spec["components"]["securitySchemes"], spec.get("components")
    assert service.broker._connection is None


async def test_no_dev_tenant_unless_asked(service_env: dict[str, str], monkeypatch) -> None:
    """Production is not dev: only `agentbus up` (AGENTBUS_DEV_TENANT) makes tenant `dev`."""
    from pathlib import Path

    monkeypatch.setenv("AGENTBUS_DEV_TENANT", "false")
    settings = GatewaySettings()
    async with running(build(settings)):
        pass
    assert not (Path(service_env["AGENTBUS_DATA_DIR"]) / "dev-api-key").exists()
    monkeypatch.setenv("AGENTBUS_DEV_TENANT", "true")
    async with running(build(GatewaySettings())):
        pass
    assert (Path(service_env["AGENTBUS_DATA_DIR"]) / "dev-api-key").read_text().strip()
