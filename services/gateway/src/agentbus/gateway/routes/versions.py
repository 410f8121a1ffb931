"""Document versions: every distinct file uploaded as one document, and which one is live.

A document's id stays the same across versions (the upload keys it by file name; a different
name with an existing document's title joins that document too), so citations and links keep
pointing at it. Each version's bytes stay in the object store under their sha256; the version
rows live in PostgreSQL (`document_versions`). Ingest replaces a document's chunks in one
transaction when a new version is indexed, so retrieval only ever serves one version: the live
one is the version whose sha256 the live chunks carry (until the new version's chunks are
swapped in, the previous version stays live).
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from nats.js.errors import NotFoundError

from agentbus.contracts.streams import DOCUMENTS
from agentbus.runtime.migrations import Migration
from agentbus.runtime.stores import documents
from agentbus.runtime.stores.schema import LockKey, migrate

from ..auth.deps import CurrentPrincipal, Principal
from ..ratelimit import per_tenant

router = APIRouter(prefix="/api/v1", tags=["documents"])
Auth = CurrentPrincipal

SCHEMA = """
CREATE TABLE IF NOT EXISTS document_versions (
    tenant_id     text NOT NULL,
    document_id   text NOT NULL,
    version       integer NOT NULL,
    sha256        text NOT NULL,
    bytes         bigint NOT NULL DEFAULT 0,
    filename      text,
    title         text,
    content_type  text,
    uploaded_by   text,
    uploaded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, document_id, version)
);
"""

MIGRATIONS = (Migration(1, "document versions", (SCHEMA,)),)


async def ensure_schema(pool: asyncpg.Pool) -> None:
    await migrate(pool, LockKey.DOCUMENT_VERSIONS, MIGRATIONS)


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.store.pool
    return pool


async def target(request: Request, tenant_id: str, by_name: str, title: str | None) -> str:
    """The document an upload adds a version to: the one named by
    `POST /documents/{id}/versions`, else the one with the file's name (`by_name`), else an
    existing document with the same title, else a new document (`by_name`)."""
    forced = getattr(request.state, "version_of", None)
    if forced:
        return str(forced)
    if not title:
        return by_name
    pool = _pool(request)
    if await documents.exists(pool, tenant_id, by_name):
        return by_name
    # The title a version was uploaded with, or the one ingest keeps for the document.
    found: list[tuple[Any, str]] = []
    with contextlib.suppress(asyncpg.UndefinedTableError):
        row = await pool.fetchrow(
            "SELECT document_id, uploaded_at FROM document_versions"
            " WHERE tenant_id = $1 AND title = $2 ORDER BY uploaded_at DESC LIMIT 1",
            tenant_id,
            title,
        )
        if row is not None:
            found.append((row["uploaded_at"], str(row["document_id"])))
    if (kept := await documents.latest_titled(pool, tenant_id, title)) is not None:
        found.append((kept[1], kept[0]))
    if found:
        return max(found, key=lambda f: f[0])[1]
    return by_name


async def record(
    request: Request,
    principal: Principal,
    document_id: str,
    sha256: str,
    filename: str,
    title: str | None,
    content_type: str,
) -> int:
    """The version number of these bytes: the latest when they are the same bytes, else a new
    version (numbered from 1)."""
    size = 0
    with contextlib.suppress(NotFoundError):
        objects = await request.app.state.runs.nc.jetstream().object_store(DOCUMENTS.name)
        info = await objects.get_info(f"{principal.tenant_id}/{document_id}/{sha256}")
        size = int(info.size or 0)
    async with _pool(request).acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(727019, hashtext($1 || '/' || $2))",
            principal.tenant_id,
            document_id,
        )
        latest = await conn.fetchrow(
            "SELECT version, sha256 FROM document_versions WHERE tenant_id = $1"
            " AND document_id = $2 ORDER BY version DESC LIMIT 1",
            principal.tenant_id,
            document_id,
        )
        if latest is not None and latest["sha256"] == sha256:
            return int(latest["version"])
        version = 1 if latest is None else int(latest["version"]) + 1
        await conn.execute(
            "INSERT INTO document_versions (tenant_id, document_id, version, sha256, bytes,"
            " filename, title, content_type, uploaded_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            principal.tenant_id,
            document_id,
            version,
            sha256,
            size,
            filename,
            title,
            content_type,
            principal.user_id or f"api_key:{principal.api_key_id}",
        )
    return version


async def forget(request: Request, tenant_id: str, document_id: str) -> None:
    """The document was deleted: its versions go too (a later upload starts at version 1)."""
    await _pool(request).execute(
        "DELETE FROM document_versions WHERE tenant_id = $1 AND document_id = $2",
        tenant_id,
        document_id,
    )


async def _live_sha(pool: asyncpg.Pool, tenant_id: str, document_id: str) -> str | None:
    """The sha256 of the version retrieval serves (its chunks), None before any is indexed."""
    with contextlib.suppress(asyncpg.UndefinedTableError):
        sha = await pool.fetchval(
            "SELECT sha256 FROM chunks WHERE tenant_id = $1 AND document_id = $2 LIMIT 1",
            tenant_id,
            document_id,
        )
        return None if sha is None else str(sha)
    return None


@router.get(
    "/documents/{document_id}/versions",
    summary="The document's versions, newest first, and which one is live",
    responses={404: {"description": "No such document for this tenant"}},
)
async def list_versions(document_id: str, request: Request, principal: Auth) -> dict[str, Any]:
    pool = _pool(request)
    rows = await pool.fetch(
        "SELECT version, sha256, bytes, filename, title, content_type, uploaded_by, uploaded_at"
        " FROM document_versions WHERE tenant_id = $1 AND document_id = $2"
        " ORDER BY version DESC",
        principal.tenant_id,
        document_id,
    )
    if not rows or not await request.app.state.store.uploaded(principal.tenant_id, document_id):
        raise HTTPException(404, "Document not found")  # none, or deleted since
    live_sha = await _live_sha(pool, principal.tenant_id, document_id)
    live = next((r["version"] for r in rows if r["sha256"] == live_sha), None)
    return {
        "document_id": document_id,
        "live_version": live,
        "items": [
            {
                **{k: v for k, v in dict(r).items() if k != "uploaded_at"},
                "uploaded_at": r["uploaded_at"].isoformat(),
                "live": r["version"] == live,
            }
            for r in rows
        ],
    }


@router.post(
    "/documents/{document_id}/versions",
    status_code=202,
    summary="Upload a new version of an existing document",
    dependencies=[Depends(per_tenant("upload"))],
    responses={404: {"description": "No such document for this tenant"}},
)
async def add_version(
    document_id: str,
    request: Request,
    principal: Auth,
    file: Annotated[UploadFile, File(description="txt, md, html or pdf")],
    title: Annotated[str | None, Form(max_length=500)] = None,
    tags: Annotated[str | None, Form(description="Comma-separated tags")] = None,
) -> dict[str, Any]:
    known = await _pool(request).fetchval(
        "SELECT 1 FROM document_versions WHERE tenant_id = $1 AND document_id = $2 LIMIT 1",
        principal.tenant_id,
        document_id,
    )
    if known is None or not await request.app.state.store.uploaded(
        principal.tenant_id, document_id
    ):
        raise HTTPException(404, "Document not found")
    from .documents import upload  # documents imports this module

    request.state.version_of = document_id
    result: dict[str, Any] = await upload(request, principal, file, title, tags)
    return result
