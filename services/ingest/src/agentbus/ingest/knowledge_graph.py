"""Writes to the knowledge graph over Bolt (Neo4j in production, FalkorDB embedded).

Queries stay within the Cypher both servers speak: MERGE/CREATE/UNWIND/MATCH, no APOC, no
procedures. Every node carries `tenant_id`, and every write is idempotent: a document's chunks,
mentions and co-occurrence edges are replaced as a whole, and a domain event's edges are keyed by
the event id, so redelivery never double-counts.

Values travel as escaped literals in the statement, not as Bolt parameters (FalkorDB's Bolt
parameter handling overflows a stack buffer past ~4 KB and does not escape strings: see
`agentbus.runtime.stores.knowledge_graph`). A document's rows go in batches of bounded text, so
that no statement grows with the document (parse time on the server is linear in the text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from neo4j import AsyncDriver
from neo4j.exceptions import Neo4jError

from agentbus.runtime.stores.knowledge_graph import async_driver, cypher_literal, inline_parameters

log = logging.getLogger("agentbus.ingest.knowledge_graph")

INDEXES = (
    ("Document", ("tenant_id", "document_id")),
    ("Chunk", ("tenant_id", "document_id")),
    ("Entity", ("tenant_id", "key")),
    ("Person", ("tenant_id", "key")),
    ("Team", ("tenant_id", "key")),
    ("Repository", ("tenant_id", "key")),
    ("Skill", ("tenant_id", "key")),
)

# Rows of one UNWIND statement: at most this much literal text, and this many rows.
BATCH_CHARS = 32_000
BATCH_ROWS = 500


def batches(
    rows: list[dict[str, Any]], max_chars: int = BATCH_CHARS, max_rows: int = BATCH_ROWS
) -> Iterator[list[dict[str, Any]]]:
    """`rows` in order, cut into lists whose literals add up to at most `max_chars` (a single
    larger row goes alone) and at most `max_rows` rows."""
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        length = len(cypher_literal(row)) + 2
        if batch and (size + length > max_chars or len(batch) >= max_rows):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += length
    if batch:
        yield batch


@dataclass(frozen=True)
class Mention:
    chunk_index: int
    key: str
    name: str
    kind: str
    count: int


@dataclass(frozen=True)
class Cooccurrence:
    source: str
    target: str
    weight: float


# One statement's bound. The neo4j driver has no read timeout: a Bolt server that stops answering
# on an open connection (FalkorDB's listener has been seen to leave one unanswered) would hold the
# statement, and with it the document job or the domain-events consumer, forever. Statements are
# bounded in size (batches above), so this is far above what a healthy one takes.
STATEMENT_TIMEOUT_S = 30.0


class GraphWriter:
    def __init__(
        self,
        url: str,
        user: str = "",
        password: str = "",
        *,
        falkordb: bool = False,
        timeout_s: float = STATEMENT_TIMEOUT_S,
    ) -> None:
        self._target = (url, user, password, falkordb)
        self.driver: AsyncDriver = self._connect()
        self.timeout_s = timeout_s
        self._closing: set[asyncio.Task[None]] = set()

    def _connect(self) -> AsyncDriver:
        url, user, password, falkordb = self._target
        return async_driver(url, user, password, falkordb=falkordb)

    async def close(self) -> None:
        await self.driver.close()

    async def run(self, query: str, **params: Any) -> list[dict[str, Any]]:
        try:
            records, _, _ = await asyncio.wait_for(
                self.driver.execute_query(inline_parameters(query, params)), self.timeout_s
            )
        except TimeoutError:
            # The stalled connection stays in the old driver's pool: start on a new one, and
            # close the old in the background (closing may wait on the stalled socket too).
            stalled, self.driver = self.driver, self._connect()
            task = asyncio.get_running_loop().create_task(stalled.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            raise
        return [r.data() for r in records]

    async def ensure_indexes(self) -> None:
        for label, props in INDEXES:
            fields = ", ".join(f"n.{p}" for p in props)
            # Same statement on both servers; "already exists" is the expected answer on restart.
            with contextlib.suppress(Neo4jError):
                await self.run(f"CREATE INDEX FOR (n:{label}) ON ({fields})")

    async def write_document(
        self,
        tenant_id: str,
        document_id: str,
        title: str | None,
        chunks: list[dict[str, Any]],
        mentions: list[Mention],
        related: list[Cooccurrence],
    ) -> None:
        t, doc = tenant_id, document_id
        await self.run(
            "MERGE (d:Document {tenant_id: $t, document_id: $doc}) SET d.title = $title",
            t=t,
            doc=doc,
            title=title or doc,
        )
        await self.run(
            "MATCH (c:Chunk {tenant_id: $t, document_id: $doc}) DETACH DELETE c", t=t, doc=doc
        )
        await self.run(
            "MATCH (:Entity {tenant_id: $t})-[r:RELATED {document_id: $doc}]->(:Entity) DELETE r",
            t=t,
            doc=doc,
        )
        chunk_rows = [{"chunk_index": c["chunk_index"], "page": c["page"]} for c in chunks]
        for batch in batches(chunk_rows):
            await self.run(
                """
                MATCH (d:Document {tenant_id: $t, document_id: $doc})
                UNWIND $chunks AS ch
                CREATE (c:Chunk {tenant_id: $t, document_id: $doc, chunk_index: ch.chunk_index,
                                 page: ch.page})
                CREATE (d)-[:HAS_CHUNK]->(c)
                """,
                t=t,
                doc=doc,
                chunks=batch,
            )
        for batch in batches([vars(m) for m in mentions]):
            await self.run(
                """
                UNWIND $mentions AS m
                MATCH (c:Chunk {tenant_id: $t, document_id: $doc, chunk_index: m.chunk_index})
                MERGE (e:Entity {tenant_id: $t, key: m.key})
                ON CREATE SET e.name = m.name, e.kind = m.kind
                CREATE (c)-[:MENTIONS {count: m.count}]->(e)
                """,
                t=t,
                doc=doc,
                mentions=batch,
            )
        for batch in batches([vars(r) for r in related]):
            await self.run(
                """
                UNWIND $related AS r
                MATCH (a:Entity {tenant_id: $t, key: r.source})
                MATCH (b:Entity {tenant_id: $t, key: r.target})
                CREATE (a)-[:RELATED {document_id: $doc, weight: r.weight}]->(b)
                """,
                t=t,
                doc=doc,
                related=batch,
            )

    async def delete_document(self, tenant_id: str, document_id: str) -> None:
        await self.run(
            "MATCH (:Entity {tenant_id: $t})-[r:RELATED {document_id: $doc}]->(:Entity) DELETE r",
            t=tenant_id,
            doc=document_id,
        )
        await self.run(
            "MATCH (c:Chunk {tenant_id: $t, document_id: $doc}) DETACH DELETE c",
            t=tenant_id,
            doc=document_id,
        )
        await self.run(
            "MATCH (d:Document {tenant_id: $t, document_id: $doc}) DETACH DELETE d",
            t=tenant_id,
            doc=document_id,
        )
