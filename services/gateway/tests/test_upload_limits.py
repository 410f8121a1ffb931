"""Uploads are checked before their bytes are stored, and a tenant's storage has a quota
(issue 13, point 7): a clear 4xx, and no orphan object in the `documents` bucket."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

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


async def test_a_full_documents_bucket_is_413_and_keeps_nothing(
    http: httpx.AsyncClient, service_env: dict[str, str]
) -> None:
    """The bucket's max_bytes (AGENTBUS_DOCUMENTS_MAX_BYTES) refuses a put past it: a JSON 413,
    no chunk left behind, nothing counted against the tenant's quota."""
    headers = await tenant(http)
    data = uuid.uuid4().hex.encode() * 28  # 896 bytes: under the tenant's 1,000-byte quota
    nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
    js = nc.jetstream()
    stream = f"OBJ_{DOCUMENTS.name}"
    info = await js.stream_info(stream)
    configured = info.config.max_bytes
    assert configured is not None and configured > 0  # provisioned with a limit
    try:
        # Room for less than this upload (a chunk message is the bytes plus its subject).
        info.config.max_bytes = info.state.bytes + 400
        await js.update_stream(info.config)
        files = {"file": ("full.txt", data, "text/plain")}
        full = await http.post("/api/v1/documents", files=files, headers=headers)
        assert full.status_code == 413, full.text
        assert full.headers["content-type"].startswith("application/json")
        assert "store is full" in full.json()["detail"]
        assert (await js.stream_info(stream)).state.bytes == info.state.bytes
    finally:
        info.config.max_bytes = configured
        await js.update_stream(info.config)
        await nc.close()
    assert not await stored(service_env, data)
    # Nothing of the refused upload counts: a new document of the same size still fits.
    files = {"file": ("again.txt", data, "text/plain")}
    again = await http.post("/api/v1/documents", files=files, headers=headers)
    assert again.status_code == 202, again.text
    assert await stored(service_env, data)


async def test_an_upload_streams_into_the_object_store(
    service_env: dict[str, str], tmp_path: Path
) -> None:
    """What the upload route does with Starlette's spooled file: hashed and put piece by piece
    (memory stays far below the file's size), stored whole and with its true size."""
    from agentbus.contracts import subjects as s
    from agentbus.runtime.clients.ingest import submit
    from agentbus.runtime.provisioning import provision

    size = 8 * 1024 * 1024
    path = tmp_path / "big.txt"
    path.write_bytes(os.urandom(size // 2).hex().encode())
    tenant_id = f"stream{uuid.uuid4().hex[:8]}"
    nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
    js = nc.jetstream()
    await provision(js)  # the bucket and the INGEST stream, when no service made them yet
    store = await js.object_store(DOCUMENTS.name)
    name = ""
    try:
        with path.open("rb") as file:
            tracemalloc.start()
            try:
                sub = await submit(nc, tenant_id, file, filename="big.txt", document_id="d" * 24)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert peak < size // 4, f"peak {peak} bytes for a {size}-byte upload"
        name = f"{tenant_id}/{sub.document_id}/{sub.sha256}"
        info = await store.get_info(name)
        assert info.size == size
        assert sub.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    finally:
        await js.purge_stream("INGEST", subject=s.ingest_submit(tenant_id))
        with contextlib.suppress(Exception):
            await store.delete(name)
        await nc.close()
