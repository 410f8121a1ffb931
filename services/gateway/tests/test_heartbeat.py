"""SSE keepalives: a silent stream gets a comment every `sse_heartbeat_s`, nothing else."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import nats
import pytest

from agentbus.gateway.app import build
from agentbus.gateway.settings import GatewaySettings
from agentbus.runtime.testing import running


async def test_a_silent_run_stream_gets_keepalive_comments(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No orchestrator runs here: the run is queued and its stream stays silent.
    monkeypatch.setenv("AGENTBUS_SSE_HEARTBEAT_S", "0.5")
    settings = GatewaySettings()
    assert settings.sse_heartbeat_s == 0.5
    service = build(settings)
    base = f"http://127.0.0.1:{settings.gateway_port}"
    async with running(service), httpx.AsyncClient(base_url=base, timeout=30) as http:
        key = (Path(service_env["AGENTBUS_DATA_DIR"]) / "dev-api-key").read_text().strip()
        headers = {"x-api-key": key}
        async with http.stream(
            "POST", "/api/v1/chat/stream", json={"message": "anyone there?"}, headers=headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            started = time.monotonic()
            received = b""
            async for chunk in response.aiter_bytes():
                received += chunk
                if received.count(b": keepalive\n\n") >= 3:
                    break
            elapsed = time.monotonic() - started
        # The run never ran; later tests in this session must not find it queued.
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        await nc.jetstream().purge_stream("RUNS")
        await nc.close()
        # Only comments: a client's EventSource dispatches nothing for them.
        assert received.replace(b": keepalive\n\n", b"") == b""
        # Three keepalives need at least ~two intervals of silence (a lower bound, not a timing).
        assert elapsed >= 0.9


def test_heartbeat_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTBUS_SSE_HEARTBEAT_S", "0")
    with pytest.raises(ValueError, match="sse_heartbeat_s"):
        GatewaySettings()


async def test_a_stream_nats_refuses_is_a_503_not_a_cut_off_200(
    service_env: dict[str, str],
) -> None:
    settings = GatewaySettings()
    service = build(settings)
    base = f"http://127.0.0.1:{settings.gateway_port}"
    nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
    js = nc.jetstream()
    async with running(service), httpx.AsyncClient(base_url=base, timeout=30) as http:
        key = (Path(service_env["AGENTBUS_DATA_DIR"]) / "dev-api-key").read_text().strip()
        headers = {"x-api-key": key}
        info = await js.stream_info("RUN_EVENTS")
        config = info.config
        try:
            async with http.stream(
                "POST", "/api/v1/chat/stream", json={"message": "first"}, headers=headers
            ) as first:
                assert first.status_code == 200
                # The stream stops answering direct gets: a new stream cannot read the run.
                config.allow_direct = False
                await js.update_stream(config)
                second = await http.post(
                    "/api/v1/chat/stream", json={"message": "second"}, headers=headers
                )
                assert second.status_code == 503
                assert second.headers["retry-after"] == "1"
                assert "/api/v1/runs/" in second.json()["detail"]
        finally:
            config.allow_direct = True
            await js.update_stream(config)
            await js.purge_stream("RUNS")
            await nc.close()
