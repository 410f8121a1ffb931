"""Uploads are checked before their bytes are stored, and a tenant's storage has a quota
(issue 13, point 7): a clear 4xx, and no orphan object in the `documents` bucket."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator

import httpx
import nats
import pytest

from agentbus.contracts.streams import DOCUMENTS
from agentbus.gateway.app import build
from agentbus.gateway.settings import GatewaySettings
from agentbus.runtime.testing import running

PASSWORD = "Correct-Horse-9"


@pytest.fixture
async def http(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("AGENTBUS_MAX_DOCUMENTS_PER_TENANT", "2")
    monkeypatch.setenv("AGENTBUS_MAX_STORED_BYTES_PER_TENANT", "1000")
    settings = GatewaySettings()
    base = f"http://127.0.0.1:{settings.gateway_port}"
    async with running(build(settings)), httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield client
    nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
    await nc.jetstream().purge_stream("INGEST")  # no ingest ran: leave no queued jobs behind
    await nc.close()


async def tenant(http: httpx.AsyncClient) -> dict[str, str]:
    body = {"email": f"up-{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD}
    assert (await http.post("/api/v1/auth/register", json=body)).status_code == 201
    tokens = (await http.post("/api/v1/auth/login", json=body)).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def stored(service_env: dict[str, str], data: bytes) -> bool:
    """Whether any object in the bucket holds these bytes (names end with their sha256)."""
    nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
    try:
        store = await nc.jetstream().object_store(DOCUMENTS.name)
        sha = hashlib.sha256(data).hexdigest()
        try:
            return any(o.name.endswith(sha) for o in await store.list())
        except Exception:  # an empty bucket lists nothing
            return False
    finally:
        await nc.close()


async def test_bad_fields_are_refused_before_anything_is_stored(
    http: httpx.AsyncClient, service_env: dict[str, str]
) -> None:
    headers = await tenant(http)
    data = uuid.uuid4().hex.encode()
    long_name = {"file": ("n" * 1016 + ".txt", data, "text/plain")}
    response = await http.post("/api/v1/documents", files=long_name, headers=headers)
    assert response.status_code == 422, response.text
    many_tags = ",".join(f"t{i}" for i in range(101))
    response = await http.post(
        "/api/v1/documents",
        files={"file": ("ok.txt", data, "text/plain")},
        data={"tags": many_tags},
        headers=headers,
    )
    assert response.status_code == 422, response.text
    assert not await stored(service_env, data)


async def test_a_tenants_documents_and_bytes_have_a_quota(http: httpx.AsyncClient) -> None:
    headers = await tenant(http)

    def upload(name: str, size: int) -> dict[str, object]:
        return {"files": {"file": (name, b"x" * size, "text/plain")}, "headers": headers}

    assert (await http.post("/api/v1/documents", **upload("a.txt", 100))).status_code == 202  # type: ignore[arg-type]
    assert (await http.post("/api/v1/documents", **upload("b.txt", 100))).status_code == 202  # type: ignore[arg-type]
    third = await http.post("/api/v1/documents", **upload("c.txt", 100))  # type: ignore[arg-type]
    assert third.status_code == 413 and "quota" in third.json()["detail"], third.text
    # Replacing a document is not a new one; growing it past the byte quota is refused.
    assert (await http.post("/api/v1/documents", **upload("a.txt", 300))).status_code == 202  # type: ignore[arg-type]
    big = await http.post("/api/v1/documents", **upload("b.txt", 800))  # type: ignore[arg-type]
    assert big.status_code == 413 and "quota" in big.json()["detail"], big.text
