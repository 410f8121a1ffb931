"""The chunk store in PostgreSQL + pgvector: written by ingest, read by retrieval.

Chunks are swapped in atomically per document: new chunks accumulate in `chunk_staging`
(resumable after a crash, keyed by document version) and replace the live ones in one
transaction, so a search never sees half a document.
"""

from __future__ import annotations

import contextlib

import asyncpg

from ..migrations import Migration
from .schema import LockKey, migrate


def schema_sql(dimensions: int) -> str:
    return f"""
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS documents (
    tenant_id      text NOT NULL,
    document_id    text NOT NULL,
    sha256         text NOT NULL,
    fingerprint    text NOT NULL,
    status         text NOT NULL,
    filename       text,
    content_type   text,
    title          text,
    source         text,
    tags           text[] NOT NULL DEFAULT '{{}}',
    metadata       jsonb NOT NULL DEFAULT '{{}}',
    chunk_count    integer NOT NULL DEFAULT 0,
    page_count     integer NOT NULL DEFAULT 0,
    entity_count   integer NOT NULL DEFAULT 0,
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, document_id)
);

CREATE TABLE IF NOT EXISTS chunks (
    tenant_id      text NOT NULL,
    document_id    text NOT NULL,
    chunk_index    integer NOT NULL,
    sha256         text NOT NULL,
    content_hash   text NOT NULL,
    page           integer,
    title          text,
    source         text,
    tags           text[] NOT NULL DEFAULT '{{}}',
    metadata       jsonb NOT NULL DEFAULT '{{}}',
    text           text NOT NULL,
    embedding      vector({dimensions}) NOT NULL,
    tsv            tsvector GENERATED ALWAYS AS
                   (to_tsvector('english', coalesce(title, '') || ' ' || text)) STORED,
    PRIMARY KEY (tenant_id, document_id, chunk_index)
);
CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks
    USING hnsw (embedding vector_cosine_ops);
CREATE INDEX IF NOT EXISTS chunks_tsv_gin ON chunks USING gin (tsv);
CREATE INDEX IF NOT EXISTS chunks_tenant ON chunks (tenant_id);

CREATE TABLE IF NOT EXISTS chunk_staging (
    tenant_id      text NOT NULL,
    document_id    text NOT NULL,
    version        text NOT NULL,
    chunk_index    integer NOT NULL,
    content_hash   text NOT NULL,
    page           integer,
    text           text NOT NULL,
    embedding      vector({dimensions}) NOT NULL,
    PRIMARY KEY (tenant_id, document_id, version, chunk_index)
);
"""


def migrations(dimensions: int) -> tuple[Migration, ...]:
    """The embedding size is fixed when the tables are made (migration 1)."""
    return (Migration(1, "documents, chunks and staging", (schema_sql(dimensions),)),)


async def ensure_schema(conn: asyncpg.Connection, dimensions: int) -> None:
    """Create the tables if missing. Serialised by an advisory lock: replicas start together."""
    await migrate(conn, LockKey.CHUNKS, migrations(dimensions))
    # A database default, not a per-connection SET: asyncpg's pool runs RESET ALL when a
    # connection is released, which would drop a session setting after its first query
    # (bench/retrieval_latency.py measured hybrid recall@10 0.87 without it, 0.998 with it).
    # Not the database owner: the per-connection SET in create_pool still covers new sessions.
    with contextlib.suppress(asyncpg.PostgresError):
        await conn.execute(
            "DO $$ BEGIN EXECUTE format("
            "'ALTER DATABASE %I SET hnsw.iterative_scan = relaxed_order', current_database());"
            " END $$"
        )


async def create_pool(dsn: str, dimensions: int) -> asyncpg.Pool:
    """A pool whose connections know the pgvector type, with the schema in place."""
    from pgvector.asyncpg import register_vector

    async def init(conn: asyncpg.Connection) -> None:
        await register_vector(conn)
        # With a tenant filter, keep scanning the HNSW index until enough rows match.
        await conn.execute("SET hnsw.iterative_scan = relaxed_order")

    setup = await asyncpg.connect(dsn)
    try:
        await ensure_schema(setup, dimensions)
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=8, init=init)
    assert pool is not None
    return pool
