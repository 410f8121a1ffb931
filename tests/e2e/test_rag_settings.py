"""Per-tenant pipeline settings over HTTP (issue 17, RAG application): validated, admin-only,
tenant-scoped, used by retrieval, and a chunking change re-indexes the tenant's documents."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import nats
import pytest

from agentbus.contracts import SearchRequest, SearchResult
from agentbus.contracts import subjects as s
from agentbus.runtime.platform import Platform

from .rag_support import Tenant, new_tenant

pytestmark = pytest.mark.e2e

SETTINGS = "/api/v1/settings/pipeline"
REINDEX = "/api/v1/settings/pipeline/reindex"


@pytest.fixture
async def pool(platform: Platform) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(platform.engines.urls()["postgres"], min_size=1, max_size=2)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
async def owner(platform: Platform, pool: asyncpg.Pool) -> Tenant:
    return await new_tenant(platform, pool)


@pytest.fixture
async def tenant(owner: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of a fresh tenant."""
    client = await owner.client()
    yield client
    await client.aclose()


async def indexed(
    client: httpx.AsyncClient, document_id: str, timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = (await client.get(f"/api/v1/documents/{document_id}")).json()
        if doc.get("status") in ("indexed", "failed"):
            return dict(doc)
        await asyncio.sleep(0.2)
    raise AssertionError(f"document {document_id} not indexed in {timeout}s")


async def test_settings_validated_admin_only_and_per_tenant(
    platform: Platform, pool: asyncpg.Pool, owner: Tenant, tenant: httpx.AsyncClient
) -> None:
    first = (await tenant.get(SETTINGS)).json()
    assert first["revision"] == 0 and first["reindex"] is None
    assert first["chunking"] == {"method": "sentence", "size": 200, "overlap": 30}
    assert first["retrieval"] == {"method": "hybrid", "top_k": 5, "threshold": None}
    assert first["embedding"]["model"] in first["options"]["embedding_models"]

    bad_bodies = [
        {"chunking": {"size": 100, "overlap": 100}},  # overlap must be below size
        {"chunking": {"size": 10}},
        {"chunking": {"method": "paragraph"}},
        {"retrieval": {"top_k": 0}},
        {"retrieval": {"threshold": 1.5}},
        {"embedding": {"model": "nobody/unknown-model"}},
        {"retrieval": {"top_k": 3, "rerank": True}},  # unknown field
        {"colour": "blue"},
    ]
    for body in bad_bodies:
        response = await tenant.put(SETTINGS, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"], response.text
    assert (await tenant.get(SETTINGS)).json()["revision"] == 0  # nothing was saved

    # Retrieval only: saved, no re-index (stored vectors are unchanged).
    changed = await tenant.put(SETTINGS, json={"retrieval": {"top_k": 3, "threshold": 0.2}})
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["revision"] == 1 and body["reindex"] is None
    assert body["retrieval"] == {"method": "hybrid", "top_k": 3, "threshold": 0.2}
    assert body["chunking"] == first["chunking"]  # left out, kept
    assert body["updated_by"]

    # A member key without the admin scope reads but cannot write.
    async with await owner.client(scopes=()) as reader:
        assert (await reader.get(SETTINGS)).json()["retrieval"]["top_k"] == 3
        refused = await reader.put(SETTINGS, json={"retrieval": {"top_k": 9}})
        assert refused.status_code == 403, refused.text
    assert (await tenant.get(SETTINGS)).json()["revision"] == 1

    # Another tenant does not see this tenant's settings.
    other = await (await new_tenant(platform, pool)).client()
    try:
        assert (await other.get(SETTINGS)).json()["revision"] == 0
        assert (await other.get(REINDEX)).json()["state"] == "idle"
    finally:
        await other.aclose()


async def test_chunking_change_reindexes_and_retrieval_follows_settings(
    platform: Platform, owner: Tenant, tenant: httpx.AsyncClient
) -> None:
    text = " ".join(
        f"Section {i}. The staging cluster {i} restarts nightly and pages the on-call rota."
        for i in range(40)
    )
    upload = await tenant.post(
        "/api/v1/documents", files={"file": ("runbook.txt", text.encode(), "text/plain")}
    )
    assert upload.status_code == 202, upload.text
    doc_id = upload.json()["document_id"]
    before = await indexed(tenant, doc_id)
    assert before["status"] == "indexed" and before["chunk_count"] > 1
    tenant_id = owner.id

    nc = await nats.connect(platform.engines.urls()["nats"])
    try:

        async def search() -> SearchResult:
            # What the agent's document search sends: nothing but the query.
            req = SearchRequest(tenant_id=tenant_id, query="staging cluster restarts")
            reply = await nc.request(
                s.RETRIEVAL_SEARCH, req.model_dump_json(exclude_unset=True).encode(), timeout=30
            )
            return SearchResult.model_validate_json(reply.data)

        assert len((await search()).hits) == 5  # the default top_k
        await tenant.put(SETTINGS, json={"retrieval": {"top_k": 2, "method": "keyword"}})
        result = await search()
        assert len(result.hits) == 2 and result.mode == "keyword"

        # A chunk size the tenant's document does not fit in once: re-indexed in the background.
        changed = await tenant.put(SETTINGS, json={"chunking": {"size": 64, "overlap": 8}})
        assert changed.status_code == 200, changed.text
        reindex = changed.json()["reindex"]
        assert reindex["total"] == 1 and reindex["revision"] == changed.json()["revision"]
        deadline = time.monotonic() + 120
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = (await tenant.get(REINDEX)).json()
            if status["state"] == "done":
                break
            await asyncio.sleep(0.2)
        assert status["state"] == "done" and status["done"] == 1 and status["failed"] == 0
        after = (await tenant.get(f"/api/v1/documents/{doc_id}")).json()
        assert after["status"] == "indexed"
        assert after["chunk_count"] > before["chunk_count"]  # smaller chunks, more of them
    finally:
        await nc.close()
