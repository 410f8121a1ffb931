"""Fixtures of the analytics tests: the session's NATS, a fresh chDB directory per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from agentbus.runtime.engines import NatsEngine
from agentbus.runtime.provisioning import provision


@pytest.fixture
def analytics_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, nats_engine: NatsEngine
) -> dict[str, str]:
    """Only NATS is needed: ClickHouse is chDB under this test's data dir."""
    env = {
        **nats_engine.env(),
        "AGENTBUS_DATA_DIR": str(tmp_path / "var"),
        "AGENTBUS_ANALYTICS_FLUSH_INTERVAL_S": "0.2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def tenant() -> str:
    # The session's streams and durable consumers are shared by every test: unique tenants keep
    # each test's numbers its own.
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def nc(analytics_env: dict[str, str]) -> AsyncIterator[NatsClient]:
    client = await nats.connect(analytics_env["AGENTBUS_NATS_URL"])
    # Streams and consumers exist before anything is published, as in a running platform.
    await provision(client.jetstream(), "analytics")
    try:
        yield client
    finally:
        await client.close()
