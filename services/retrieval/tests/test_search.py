"""Retrieval over the real bus, PostgreSQL + pgvector and the Bolt graph, with chunks written
directly (the ingest pipeline has its own tests)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import nats
import pytest

from agentbus.contracts import (
    ErrorReply,
    GraphQuery,
    GraphResult,
    Passages,
    PassagesRequest,
    SearchFilters,
    SearchRequest,
    SearchResult,
)
from agentbus.contracts import subjects as s
from agentbus.retrieval.app import build
from agentbus.retrieval.settings import RetrievalSettings
from agentbus.runtime.llm.embeddings import embed
from agentbus.runtime.stores.chunks import create_pool
from agentbus.runtime.stores.knowledge_graph import async_driver
from agentbus.runtime.testing import running

TEXTS = {
    ("t1", "doc-a", 0): (
        "Rollback guide",
        "Revert a broken release with deployctl rollback.",
        ["ops"],
    ),
    ("t1", "doc-a", 1): (
        "Rollback guide",
        "Confirm the rollback on the release dashboard.",
        ["ops"],
    ),
    ("t1", "doc-b", 0): ("Coffee", "Descale the espresso machine every Friday.", ["office"]),
    ("t2", "doc-c", 0): ("Secret", "Tenant two also writes about rollback of releases.", ["ops"]),
}


@pytest.fixture
async def retrieval(service_env: dict[str, str]) -> AsyncIterator[nats.NATS]:
    pool = await create_pool(service_env["AGENTBUS_POSTGRES_DSN"], 384)
    vectors = (await embed([t for _, t, _ in TEXTS.values()], "local/all-MiniLM-L6-v2")).vectors
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM chunks WHERE tenant_id IN ('t1', 't2')")
        for ((tenant, doc, idx), (title, text, tags)), vec in zip(
            TEXTS.items(), vectors, strict=True
        ):
            await conn.execute(
                "INSERT INTO chunks (tenant_id, document_id, chunk_index, sha256, content_hash,"
                " page, title, source, tags, metadata, text, embedding)"
                " VALUES ($1, $2, $3, 'x', 'y', $4, $5, 'wiki', $6, $7::jsonb, $8, $9)",
                tenant,
                doc,
                idx,
                idx + 1,
                title,
                tags,
                json.dumps({"k": idx}),
                text,
                vec,
            )
    await pool.close()
    service = build(RetrievalSettings())
    async with running(service):
        nc = await nats.connect(service_env["AGENTBUS_NATS_URL"])
        yield nc
        await nc.close()


async def ask(nc: nats.NATS, req: SearchRequest) -> SearchResult:
    reply = await nc.request(s.RETRIEVAL_SEARCH, req.model_dump_json().encode(), timeout=30)
    return SearchResult.model_validate_json(reply.data)


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
async def test_each_mode_finds_the_right_chunk_within_the_tenant(retrieval, mode: str) -> None:
    result = await ask(
        retrieval, SearchRequest(tenant_id="t1", query="rollback release", mode=mode)
    )
    assert result.error is None
    assert result.hits and result.hits[0].document_id == "doc-a"
    assert {h.document_id for h in result.hits} <= {"doc-a", "doc-b"}  # never tenant t2
    hit = result.hits[0]
    assert hit.title == "Rollback guide" and hit.page == hit.chunk_index + 1
    assert hit.metadata == {"k": hit.chunk_index}
    # The top hit matches both the meaning and the words, so hybrid has both scores for it.
    expected = {"vector": {"vector"}, "keyword": {"keyword"}, "hybrid": {"vector", "keyword"}}
    assert set(hit.scores) == expected[mode], hit.scores


async def test_filters_and_min_score(retrieval) -> None:
    only_b = await ask(
        retrieval,
        SearchRequest(
            tenant_id="t1",
            query="rollback",
            mode="vector",
            filters=SearchFilters(document_ids=["doc-b"]),
        ),
    )
    assert {h.document_id for h in only_b.hits} == {"doc-b"}
    tagged = await ask(
        retrieval,
        SearchRequest(
            tenant_id="t1",
            query="machine",
            mode="hybrid",
            filters=SearchFilters(tags=["office"]),
        ),
    )
    assert {h.document_id for h in tagged.hits} == {"doc-b"}
    wrong_source = await ask(
        retrieval,
        SearchRequest(
            tenant_id="t1",
            query="rollback",
            filters=SearchFilters(source="elsewhere"),
        ),
    )
    assert wrong_source.hits == []
    strict = await ask(
        retrieval, SearchRequest(tenant_id="t1", query="rollback", mode="vector", min_score=0.99)
    )
    assert strict.hits == []


async def test_unknown_tenant_gets_nothing(retrieval) -> None:
    result = await ask(retrieval, SearchRequest(tenant_id="nobody", query="rollback"))
    assert result.hits == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b'{"query": "no tenant"}', "schema"),
        (b'{"tenant_id": "t1", "query": "x", "sql": "DROP TABLE chunks"}', "schema"),
    ],
)
async def test_bad_requests_get_a_clear_error_reply(retrieval, body: bytes, reason: str) -> None:
    reply = await retrieval.request(s.RETRIEVAL_SEARCH, body, timeout=10)
    error = ErrorReply.model_validate_json(reply.data)
    assert error.reason == reason and error.error.startswith("invalid SearchRequest")


async def read(nc: nats.NATS, req: PassagesRequest) -> Passages:
    reply = await nc.request(s.RETRIEVAL_PASSAGES, req.model_dump_json().encode(), timeout=30)
    return Passages.model_validate_json(reply.data)


async def test_passages_read_a_document_in_order_within_the_tenant(retrieval) -> None:
    whole = await read(retrieval, PassagesRequest(tenant_id="t1", document_id="doc-a"))
    assert whole.found and whole.title == "Rollback guide" and not whole.truncated
    assert [(p.chunk_index, p.page) for p in whole.passages] == [(0, 1), (1, 2)]
    assert whole.passages[1].text == "Confirm the rollback on the release dashboard."
    page = await read(retrieval, PassagesRequest(tenant_id="t1", document_id="doc-a", page=2))
    assert [p.chunk_index for p in page.passages] == [1]
    # A page past the end: the document exists, the page has nothing.
    past = await read(retrieval, PassagesRequest(tenant_id="t1", document_id="doc-a", page=9))
    assert past.found and past.passages == []
    cut = await read(retrieval, PassagesRequest(tenant_id="t1", document_id="doc-a", max_chars=60))
    assert cut.truncated and sum(len(p.text) for p in cut.passages) == 60
    assert [p.chunk_index for p in cut.passages] == [0, 1]
    # Another tenant's document is the same answer as no document.
    for req in (
        PassagesRequest(tenant_id="t1", document_id="doc-c"),
        PassagesRequest(tenant_id="t1", document_id="doc-c", page=1),
        PassagesRequest(tenant_id="t1", document_id="nothing"),
    ):
        other = await read(retrieval, req)
        assert not other.found and other.passages == [] and other.title is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"tenant_id": "t1"}',
        b'{"tenant_id": "t1", "document_id": "doc-a", "page": 0}',
        b'{"tenant_id": "t1", "document_id": "doc-a", "max_chars": 10000000}',
    ],
)
async def test_bad_passage_requests_get_a_clear_error_reply(retrieval, body: bytes) -> None:
    reply = await retrieval.request(s.RETRIEVAL_PASSAGES, body, timeout=10)
    error = ErrorReply.model_validate_json(reply.data)
    assert error.reason == "schema" and error.error.startswith("invalid PassagesRequest")


async def test_graph_queries_are_named_and_tenant_scoped(retrieval, service_env) -> None:
    driver = async_driver(service_env["AGENTBUS_GRAPH_URL"])
    try:
        await driver.execute_query("MATCH (n {tenant_id: 'g1'}) DETACH DELETE n")
        await driver.execute_query(
            "CREATE (:Document {tenant_id: 'g1', document_id: 'd1', title: 'Guide'})"
            "-[:HAS_CHUNK]->(:Chunk {tenant_id: 'g1', document_id: 'd1', chunk_index: 0, page: 2})"
            "-[:MENTIONS {count: 3}]->"
            "(:Entity {tenant_id: 'g1', key: 'pagerduty', name: 'PagerDuty', kind: 'name'})"
        )
    finally:
        await driver.close()

    async def query(tenant: str, name: str, **params: str) -> GraphResult:
        req = GraphQuery(tenant_id=tenant, name=name, params=params)  # type: ignore[arg-type]
        reply = await retrieval.request(s.GRAPH_QUERY, req.model_dump_json().encode(), timeout=10)
        return GraphResult.model_validate_json(reply.data)

    found = await query("g1", "documents_mentioning", entity="PagerDuty")
    assert found.rows == [
        {"document_id": "d1", "title": "Guide", "chunks": 1, "mentions": 3, "pages": [2]}
    ]
    assert (await query("g2", "documents_mentioning", entity="PagerDuty")).rows == []
    bad = await query("g1", "people_by_skill", language="rust")
    assert bad.error and "skill" in bad.error
    raw = await retrieval.request(
        s.GRAPH_QUERY,
        b'{"tenant_id": "g1", "name": "cypher", "params": {"q": "MATCH (n) RETURN n"}}',
        timeout=10,
    )
    assert ErrorReply.model_validate_json(raw.data).reason == "schema"
