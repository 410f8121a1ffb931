"""Documents and chunks in PostgreSQL: idempotent, resumable, atomically replaced."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from agentbus.contracts import IngestRequested


@dataclass(frozen=True)
class DocumentRow:
    sha256: str
    fingerprint: str
    status: str
    chunk_count: int
    page_count: int
    entity_count: int


@dataclass(frozen=True)
class StagedChunk:
    chunk_index: int
    content_hash: str
    page: int | None
    text: str
    embedding: list[float]


class ChunkStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def document(self, tenant_id: str, document_id: str) -> DocumentRow | None:
        row = await self.pool.fetchrow(
            "SELECT sha256, fingerprint, status, chunk_count, page_count, entity_count"
            " FROM documents WHERE tenant_id = $1 AND document_id = $2",
            tenant_id,
            document_id,
        )
        return DocumentRow(**dict(row)) if row else None

    async def begin(self, job: IngestRequested, fingerprint: str) -> None:
        """Record the version being indexed; the live chunks stay until the swap."""
        await self.pool.execute(
            """
            INSERT INTO documents (tenant_id, document_id, sha256, fingerprint, status, filename,
                                   content_type, title, source, tags, metadata, error)
            VALUES ($1, $2, $3, $4, 'processing', $5, $6, $7, $8, $9, $10::jsonb, NULL)
            ON CONFLICT (tenant_id, document_id) DO UPDATE SET
                sha256 = EXCLUDED.sha256, fingerprint = EXCLUDED.fingerprint,
                status = CASE WHEN documents.sha256 = EXCLUDED.sha256
                               AND documents.fingerprint = EXCLUDED.fingerprint
                               AND documents.status IN ('stored', 'indexed')
                          THEN documents.status ELSE 'processing' END,
                filename = EXCLUDED.filename, content_type = EXCLUDED.content_type,
                title = EXCLUDED.title, source = EXCLUDED.source, tags = EXCLUDED.tags,
                metadata = EXCLUDED.metadata, error = NULL, updated_at = now()
            """,
            job.tenant_id,
            job.document_id,
            job.sha256,
            fingerprint,
            job.filename,
            job.content_type,
            job.title,
            job.source,
            job.tags,
            json.dumps(job.metadata),
        )

    async def set_title(self, tenant_id: str, document_id: str, title: str | None) -> None:
        await self.pool.execute(
            "UPDATE documents SET title = coalesce(title, $3) WHERE tenant_id = $1"
            " AND document_id = $2",
            tenant_id,
            document_id,
            title,
        )

    async def staged(self, tenant_id: str, document_id: str, version: str) -> dict[int, str]:
        """chunk_index -> content_hash already embedded for this version (a resumed job)."""
        rows = await self.pool.fetch(
            "SELECT chunk_index, content_hash FROM chunk_staging"
            " WHERE tenant_id = $1 AND document_id = $2 AND version = $3",
            tenant_id,
            document_id,
            version,
        )
        return {r["chunk_index"]: r["content_hash"] for r in rows}

    async def stage(
        self, tenant_id: str, document_id: str, version: str, chunks: list[StagedChunk]
    ) -> None:
        await self.pool.executemany(
            """
            INSERT INTO chunk_staging (tenant_id, document_id, version, chunk_index,
                                       content_hash, page, text, embedding)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (tenant_id, document_id, version, chunk_index) DO UPDATE SET
                content_hash = EXCLUDED.content_hash, page = EXCLUDED.page,
                text = EXCLUDED.text, embedding = EXCLUDED.embedding
            """,
            [
                (
                    tenant_id,
                    document_id,
                    version,
                    c.chunk_index,
                    c.content_hash,
                    c.page,
                    c.text,
                    c.embedding,
                )
                for c in chunks
            ],
        )

    async def swap(
        self,
        job: IngestRequested,
        version: str,
        title: str | None,
        chunk_count: int,
        page_count: int,
    ) -> None:
        """Replace the document's live chunks with the staged version in one transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM chunks WHERE tenant_id = $1 AND document_id = $2",
                job.tenant_id,
                job.document_id,
            )
            await conn.execute(
                """
                INSERT INTO chunks (tenant_id, document_id, chunk_index, sha256, content_hash,
                                    page, title, source, tags, metadata, text, embedding)
                SELECT tenant_id, document_id, chunk_index, $4, content_hash, page, $5, $6, $7,
                       $8::jsonb, text, embedding
                FROM chunk_staging
                WHERE tenant_id = $1 AND document_id = $2 AND version = $3 AND chunk_index < $9
                """,
                job.tenant_id,
                job.document_id,
                version,
                job.sha256,
                title,
                job.source,
                job.tags,
                json.dumps(job.metadata),
                chunk_count,
            )
            await conn.execute(
                "DELETE FROM chunk_staging WHERE tenant_id = $1 AND document_id = $2",
                job.tenant_id,
                job.document_id,
            )
            await conn.execute(
                "UPDATE documents SET status = 'stored', chunk_count = $3, page_count = $4,"
                " title = coalesce($5, title), updated_at = now()"
                " WHERE tenant_id = $1 AND document_id = $2",
                job.tenant_id,
                job.document_id,
                chunk_count,
                page_count,
                title,
            )

    async def chunks_for_graph(self, tenant_id: str, document_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT chunk_index, page, text FROM chunks WHERE tenant_id = $1 AND document_id = $2"
            " ORDER BY chunk_index",
            tenant_id,
            document_id,
        )
        return [dict(r) for r in rows]

    async def mark_indexed(self, tenant_id: str, document_id: str, entities: int) -> None:
        await self.pool.execute(
            "UPDATE documents SET status = 'indexed', entity_count = $3, updated_at = now()"
            " WHERE tenant_id = $1 AND document_id = $2",
            tenant_id,
            document_id,
            entities,
        )

    async def mark_failed(self, tenant_id: str, document_id: str, reason: str) -> None:
        await self.pool.execute(
            "UPDATE documents SET status = 'failed', error = $3, updated_at = now()"
            " WHERE tenant_id = $1 AND document_id = $2",
            tenant_id,
            document_id,
            reason,
        )

    async def delete(self, tenant_id: str, document_id: str) -> int | None:
        """Remove a document, its live and staged chunks in one transaction.

        Returns the number of live chunks removed, or None when the tenant has no such document.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "DELETE FROM documents WHERE tenant_id = $1 AND document_id = $2 RETURNING 1",
                tenant_id,
                document_id,
            )
            removed = await conn.fetchval(
                "WITH gone AS (DELETE FROM chunks WHERE tenant_id = $1 AND document_id = $2"
                " RETURNING 1) SELECT count(*) FROM gone",
                tenant_id,
                document_id,
            )
            await conn.execute(
                "DELETE FROM chunk_staging WHERE tenant_id = $1 AND document_id = $2",
                tenant_id,
                document_id,
            )
        return int(removed) if found else None
