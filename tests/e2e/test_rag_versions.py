"""Document versions over HTTP (issue 17, RAG application): a changed file with the same name
(or title, or sent to .../versions) is a new version of the same document; retrieval serves only
the live one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import httpx
import nats
import pytest

from agentbus.contracts import SearchRequest, SearchResult
from agentbus.contracts import subjects as s
from agentbus.runtime.platform import Platform

from .rag_support import Tenant, new_tenant

pytestmark = pytest.mark.e2e


@pytest.fixture
async def owner(platform: Platform) -> AsyncIterator[Tenant]:
    pool = await asyncpg.create_pool(platform.engines.urls()["postgres"], min_size=1, max_size=2)
    assert pool is not None
    yield await new_tenant(platform, pool)
    await pool.close()


async def indexed_sha(client: httpx.AsyncClient, document_id: str, sha: str) -> None:
    """Wait until the version with `sha` is live (its chunks are the document's)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        versions = (await client.get(f"/api/v1/documents/{document_id}/versions")).json()
        live = [v for v in versions.get("items", []) if v["live"]]
        doc = (await client.get(f"/api/v1/documents/{document_id}")).json()
        if live and live[0]["sha256"] == sha and doc["status"] == "indexed":
            return
        assert doc.get("status") != "failed", doc
        await asyncio.sleep(0.2)
    raise AssertionError(f"version {sha[:8]} of {document_id} never went live")


async def test_versions_keep_history_and_serve_only_the_live_one(
    platform: Platform, owner: Tenant, http: httpx.AsyncClient
) -> None:
    client = await owner.client()
    nc = await nats.connect(platform.engines.urls()["nats"])

    async def texts(query: str) -> list[str]:
        req = SearchRequest(tenant_id=owner.id, query=query, mode="keyword", top_k=10)
        reply = await nc.request(s.RETRIEVAL_SEARCH, req.model_dump_json().encode(), timeout=30)
        return [h.text for h in SearchResult.model_validate_json(reply.data).hits]

    try:
        v1 = await client.post(
            "/api/v1/documents",
            files={
                "file": ("policy.txt", b"Expenses are approved by the finance lead.", "text/plain")
            },
            data={"title": "Expense policy"},
        )
        assert v1.status_code == 202, v1.text
        doc = v1.json()["document_id"]
        assert v1.json()["version"] == 1
        await indexed_sha(client, doc, v1.json()["sha256"])

        # The same name, changed bytes: version 2 of the same document.
        v2 = await client.post(
            "/api/v1/documents",
            files={
                "file": ("policy.txt", b"Expenses are approved by the team manager.", "text/plain")
            },
        )
        assert (v2.json()["document_id"], v2.json()["version"]) == (doc, 2)
        # The same bytes again add nothing.
        again = await client.post(
            "/api/v1/documents",
            files={
                "file": ("policy.txt", b"Expenses are approved by the team manager.", "text/plain")
            },
        )
        assert (again.json()["document_id"], again.json()["version"]) == (doc, 2)
        await indexed_sha(client, doc, v2.json()["sha256"])
        assert any("team manager" in t for t in await texts("expenses approved"))
        assert not any("finance lead" in t for t in await texts("expenses approved finance"))

        # Another file name with the document's title, then an explicit version: 3 and 4.
        v3 = await client.post(
            "/api/v1/documents",
            files={"file": ("policy-2026.txt", b"Expenses are approved by the CFO.", "text/plain")},
            data={"title": "Expense policy"},
        )
        assert (v3.json()["document_id"], v3.json()["version"]) == (doc, 3)
        v4 = await client.post(
            f"/api/v1/documents/{doc}/versions",
            files={"file": ("anything.txt", b"Expenses are approved by the board.", "text/plain")},
        )
        assert v4.status_code == 202, v4.text
        assert (v4.json()["document_id"], v4.json()["version"]) == (doc, 4)
        await indexed_sha(client, doc, v4.json()["sha256"])

        listed = (await client.get(f"/api/v1/documents/{doc}/versions")).json()
        assert [v["version"] for v in listed["items"]] == [4, 3, 2, 1]
        assert listed["live_version"] == 4
        assert [v["live"] for v in listed["items"]] == [True, False, False, False]
        assert listed["items"][3]["filename"] == "policy.txt" and listed["items"][3]["bytes"] > 0
        found = await texts("expenses approved")
        assert any("the board" in t for t in found)
        assert not any(w in t for t in found for w in ("CFO", "team manager", "finance lead"))

        # Bad input and other tenants: 404 for an unknown document or another tenant's.
        missing = await client.post(
            "/api/v1/documents/nosuchdoc/versions",
            files={"file": ("x.txt", b"x", "text/plain")},
        )
        assert missing.status_code == 404
        bad_type = await client.post(
            f"/api/v1/documents/{doc}/versions", files={"file": ("x.png", b"\x89PNG", "image/png")}
        )
        assert bad_type.status_code == 415
        assert (await client.get("/api/v1/documents/nosuchdoc/versions")).status_code == 404
        assert (await http.get(f"/api/v1/documents/{doc}/versions")).status_code == 404
        stolen = await http.post(
            f"/api/v1/documents/{doc}/versions", files={"file": ("x.txt", b"mine", "text/plain")}
        )
        assert stolen.status_code == 404

        # Deleting the document deletes its versions; the same name then starts at version 1.
        assert (await client.delete(f"/api/v1/documents/{doc}")).status_code == 204
        assert (await client.get(f"/api/v1/documents/{doc}/versions")).status_code == 404
        anew = await client.post(
            "/api/v1/documents",
            files={"file": ("policy.txt", b"Expenses need no approval.", "text/plain")},
        )
        assert (anew.json()["document_id"], anew.json()["version"]) == (doc, 1)
    finally:
        await nc.close()
        await client.aclose()
