"""The ingest graph writer against the real embedded graph server.

A real manual page (pg_dumpall, postgresql-doc-15) used to kill FalkorDB: its entity list, sent
as one Bolt parameter, overflowed the server's 4 KB parameter buffer. The shapes here are that
one, generated: a title past 4 KB, one document's chunks and mentions in the hundreds, strings
with quotes and backslashes (which FalkorDB's parameter splicing does not escape), and weights
that need more than six decimals. After each, the server must still run and hold the data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import pairwise

import pytest

from agentbus.ingest.knowledge_graph import BATCH_CHARS, Cooccurrence, GraphWriter, Mention, batches
from agentbus.runtime.engines import GraphEngine
from agentbus.runtime.stores.knowledge_graph import cypher_literal

TENANT = "graph-writer-tests"


@pytest.fixture
async def writer(graph_engine: GraphEngine) -> AsyncIterator[GraphWriter]:
    w = GraphWriter(graph_engine.url)
    await w.ensure_indexes()
    try:
        yield w
    finally:
        await w.close()


def _document(chunks: int) -> tuple[list[dict[str, object]], list[Mention], list[Cooccurrence]]:
    rows: list[dict[str, object]] = [
        {"chunk_index": i, "page": None, "text": "x"} for i in range(chunks)
    ]
    names = ["pg_dumpall", "O'Reilly's \\ guide", "x' t='victim", "C:\\Program Files\\", "ünï 😀"]
    mentions = [
        Mention(
            i,
            f"{names[i % len(names)].lower()} {i % 7}",
            f"{names[i % len(names)]} {i % 7}",
            "code",
            2,
        )
        for i in range(chunks)
    ]
    keys = sorted({m.key for m in mentions})
    related = [Cooccurrence(a, b, 1 / 3 + 1e-9) for a, b in pairwise(keys)]
    return rows, mentions, related


async def test_a_document_past_the_bolt_parameter_buffer_is_written(
    writer: GraphWriter, graph_engine: GraphEngine
) -> None:
    title = "pg_dumpall — it's \\ a long title " + "a" * 5000
    rows, mentions, related = _document(600)  # more rows than one batch holds
    await writer.write_document(TENANT, "doc-big", title, rows, mentions, related)
    assert graph_engine.is_running()

    got = await writer.run(
        "MATCH (d:Document {tenant_id: $t, document_id: $doc}) RETURN d.title AS title",
        t=TENANT,
        doc="doc-big",
    )
    assert got == [{"title": title}]
    counts = await writer.run(
        """
        MATCH (:Document {tenant_id: $t, document_id: $doc})-[:HAS_CHUNK]->(c:Chunk)
        OPTIONAL MATCH (c)-[m:MENTIONS]->(:Entity)
        RETURN count(DISTINCT c) AS chunks, count(m) AS mentions
        """,
        t=TENANT,
        doc="doc-big",
    )
    assert counts == [{"chunks": 600, "mentions": 600}]
    names = await writer.run(
        "MATCH (e:Entity {tenant_id: $t}) RETURN e.name AS name ORDER BY name", t=TENANT
    )
    assert {m.name for m in mentions} == {n["name"] for n in names}
    weights = await writer.run(
        "MATCH (:Entity {tenant_id: $t})-[r:RELATED {document_id: $doc}]->() "
        "RETURN DISTINCT r.weight AS w",
        t=TENANT,
        doc="doc-big",
    )
    assert weights == [{"w": 1 / 3 + 1e-9}]  # not 0.333333, as FalkorDB prints parameters
    # "x' t='victim" stayed a string: nothing was written under another tenant.
    assert await writer.run("MATCH (n {tenant_id: 'victim'}) RETURN count(n) AS n") == [{"n": 0}]


async def test_rewriting_and_deleting_a_large_document(
    writer: GraphWriter, graph_engine: GraphEngine
) -> None:
    rows, mentions, related = _document(300)
    for _ in range(2):  # redelivery replaces, never doubles
        await writer.write_document(TENANT, "doc-again", "again", rows, mentions, related)
    count = "MATCH (c:Chunk {tenant_id: $t, document_id: $doc}) RETURN count(c) AS n"
    assert await writer.run(count, t=TENANT, doc="doc-again") == [{"n": 300}]
    await writer.delete_document(TENANT, "doc-again")
    assert await writer.run(count, t=TENANT, doc="doc-again") == [{"n": 0}]
    assert graph_engine.is_running()


def test_batches_bound_text_and_rows() -> None:
    rows = [{"key": "k" * 90, "i": i} for i in range(2000)]
    cut = list(batches(rows))
    assert [r for batch in cut for r in batch] == rows
    assert all(len(batch) <= 500 for batch in cut)
    assert all(sum(len(cypher_literal(r)) + 2 for r in batch) <= BATCH_CHARS for batch in cut)
    # A row larger than the bound goes alone rather than being dropped.
    huge = [{"key": "a" * 100}, {"key": "b" * (BATCH_CHARS + 1)}, {"key": "c"}]
    assert list(batches(huge)) == [[huge[0]], [huge[1]], [huge[2]]]
    assert list(batches([])) == []
