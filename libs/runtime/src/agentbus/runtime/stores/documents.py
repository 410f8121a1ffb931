"""Reads of the `documents` table, for every service that is not its writer.

Owner: the table's schema lives with the chunks (`stores/chunks.py`); ingest is its only writer
(`ingest/store.py`: a row per document, its status, counts and the sha256 of its stored bytes).
The gateway reads it for the document routes, the web app's file view, versions, re-indexing and
MCP's resources, through these functions only, so a change to the table is made here and in
ingest, nowhere else.

Every read is scoped to one tenant. Before ingest has started once the table does not exist:
reads answer as for a tenant without documents.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import asyncpg

# What the document routes show of a row.
SUMMARY = "document_id, title, filename, status, chunk_count, page_count, error, updated_at"
DETAIL = (
    "document_id, title, filename, content_type, status, chunk_count, page_count,"
    " entity_count, error, created_at, updated_at"
)


async def page(
    pool: asyncpg.Pool, tenant_id: str, limit: int, offset: int, *, indexed_only: bool = False
) -> list[dict[str, Any]]:
    """The tenant's documents, most recently changed first; only the searchable ones (status
    `indexed`) with `indexed_only`."""
    where = " AND status = 'indexed'" if indexed_only else ""
    with contextlib.suppress(asyncpg.UndefinedTableError):
        rows = await pool.fetch(
            f"SELECT {SUMMARY} FROM documents WHERE tenant_id = $1{where}"
            " ORDER BY updated_at DESC, document_id LIMIT $2 OFFSET $3",
            tenant_id,
            limit,
            offset,
        )
        return [dict(r) for r in rows]
    return []


async def one(pool: asyncpg.Pool, tenant_id: str, document_id: str) -> dict[str, Any] | None:
    with contextlib.suppress(asyncpg.UndefinedTableError):
        row = await pool.fetchrow(
            f"SELECT {DETAIL} FROM documents WHERE tenant_id = $1 AND document_id = $2",
            tenant_id,
            document_id,
        )
        return dict(row) if row is not None else None
    return None


async def exists(pool: asyncpg.Pool, tenant_id: str, document_id: str) -> bool:
    with contextlib.suppress(asyncpg.UndefinedTableError):
        found = await pool.fetchval(
            "SELECT 1 FROM documents WHERE tenant_id = $1 AND document_id = $2",
            tenant_id,
            document_id,
        )
        return found is not None
    return False


async def stored_file(
    pool: asyncpg.Pool, tenant_id: str, document_id: str
) -> tuple[str, str | None, str | None] | None:
    """(sha256, filename, content type) of the document's stored bytes; None when it has none."""
    with contextlib.suppress(asyncpg.UndefinedTableError):
        row = await pool.fetchrow(
            "SELECT sha256, filename, content_type FROM documents"
            " WHERE tenant_id = $1 AND document_id = $2",
            tenant_id,
            document_id,
        )
        if row is not None and row["sha256"]:
            return row["sha256"], row["filename"], row["content_type"]
    return None


async def latest_titled(
    pool: asyncpg.Pool, tenant_id: str, title: str
) -> tuple[str, datetime] | None:
    """The most recently changed document with this title, and when it changed."""
    with contextlib.suppress(asyncpg.UndefinedTableError):
        row = await pool.fetchrow(
            "SELECT document_id, updated_at FROM documents WHERE tenant_id = $1 AND title = $2"
            " ORDER BY updated_at DESC LIMIT 1",
            tenant_id,
            title,
        )
        if row is not None:
            return row["document_id"], row["updated_at"]
    return None


async def with_bytes(pool: asyncpg.Pool, tenant_id: str) -> list[dict[str, Any]]:
    """Every document of the tenant with stored bytes, what re-submitting it takes."""
    with contextlib.suppress(asyncpg.UndefinedTableError):
        rows = await pool.fetch(
            "SELECT document_id, sha256, filename, content_type, title, source, tags"
            " FROM documents WHERE tenant_id = $1 AND sha256 <> '' ORDER BY document_id",
            tenant_id,
        )
        return [dict(r) for r in rows]
    return []
