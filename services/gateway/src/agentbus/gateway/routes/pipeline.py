"""Per-tenant RAG pipeline settings over HTTP, and the re-index a vector-changing edit starts.

The settings live in PostgreSQL (`agentbus.runtime.stores.pipeline_settings`), where ingest and
retrieval read them per job and per search. A change to chunking or to the embedding model
makes every stored vector of the tenant stale, so the PUT re-submits each of the tenant's
documents to ingest (the stored bytes, no upload), which re-chunks and re-embeds them with the
new settings. Progress is not kept in the gateway: a document is done when ingest has indexed
it with the new settings' fingerprint (`documents.fingerprint`), so any replica answers
`GET .../reindex` and a gateway restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentbus.contracts import IngestRequested
from agentbus.contracts import subjects as s
from agentbus.contracts.streams import DOCUMENTS
from agentbus.runtime.stores import documents
from agentbus.runtime.stores import pipeline_settings as ps
from agentbus.runtime.traces import nats_span

from ..auth.deps import AdminPrincipal, CurrentPrincipal

log = logging.getLogger("agentbus.gateway.settings")

router = APIRouter(prefix="/api/v1", tags=["settings"])
Auth = CurrentPrincipal

# Models whose vectors the platform's pgvector column can hold (each accepts `dimensions`).
EMBEDDING_MODELS = (
    ps.DEFAULT_EMBEDDING_MODEL,
    "openai/text-embedding-3-small",
    "openai/text-embedding-3-large",
)
DEFAULT_DIMENSIONS = 384


class _Patch(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChunkingPatch(_Patch):
    method: ps.ChunkingMethod | None = None
    size: int | None = None
    overlap: int | None = None


class EmbeddingPatch(_Patch):
    model: str | None = Field(default=None, max_length=200)


class RetrievalPatch(_Patch):
    method: ps.RetrievalMethod | None = None
    top_k: int | None = None
    threshold: float | None = None


class PipelinePatch(_Patch):
    """Every section and field optional: what is left out keeps its current value. The merged
    settings are validated as a whole (ranges, overlap below size) before anything is saved."""

    chunking: ChunkingPatch | None = None
    embedding: EmbeddingPatch | None = None
    retrieval: RetrievalPatch | None = None


def _pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.store.pool
    return pool


async def dimensions(pool: asyncpg.Pool) -> int:
    """The width of the platform's stored vectors: pgvector keeps it as the column's typmod."""
    with contextlib.suppress(asyncpg.UndefinedTableError):
        width = await pool.fetchval(
            "SELECT atttypmod FROM pg_attribute"
            " WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        )
        if width and width > 0:
            return int(width)
    return DEFAULT_DIMENSIONS


def _merge(current: ps.PipelineSettings, patch: PipelinePatch) -> ps.PipelineSettings:
    merged = current.model_dump()
    for section, values in patch.model_dump(exclude_unset=True).items():
        if values is not None:
            merged[section].update(values)
    try:
        settings = ps.PipelineSettings.model_validate(merged)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    if settings.embedding.model not in EMBEDDING_MODELS:
        raise RequestValidationError(
            [
                {
                    "loc": ("embedding", "model"),
                    "msg": f"must be one of {', '.join(EMBEDDING_MODELS)}",
                    "type": "value_error",
                }
            ]
        )
    return settings


def _json(stored: ps.StoredSettings, reindex: dict[str, Any] | None) -> dict[str, Any]:
    return {
        **stored.settings.model_dump(mode="json"),
        "revision": stored.revision,
        "updated_at": stored.updated_at.isoformat() if stored.updated_at else None,
        "updated_by": stored.updated_by,
        "options": {
            "chunking_methods": list(ps.CHUNKING_METHODS),
            "embedding_models": list(EMBEDDING_MODELS),
            "retrieval_methods": list(ps.RETRIEVAL_METHODS),
        },
        "reindex": reindex,
    }


@router.get("/settings/pipeline", summary="The tenant's chunking, embedding and retrieval settings")
async def get_pipeline(request: Request, principal: Auth) -> dict[str, Any]:
    return _json(await ps.load(_pool(request), principal.tenant_id), None)


@router.put(
    "/settings/pipeline",
    summary="Change the tenant's pipeline settings (admin); re-indexes when vectors change",
    responses={403: {"description": "The caller lacks the 'admin' scope"}},
)
async def put_pipeline(
    request: Request, patch: PipelinePatch, principal: AdminPrincipal
) -> dict[str, Any]:
    pool = _pool(request)
    tenant = principal.tenant_id
    async with pool.acquire() as conn, conn.transaction():
        # One writer per tenant at a time: two admins' edits apply one after the other.
        await conn.execute("SELECT pg_advisory_xact_lock(727017, hashtext($1))", tenant)
        current = await ps.load(conn, tenant)
        settings = _merge(current.settings, patch)
        who = principal.user_id or f"api_key:{principal.api_key_id}"
        stored = await ps.save(conn, tenant, settings, who)
    reindex = None
    if settings.vectors_changed(current.settings):
        await start_reindex(request, tenant, stored)
        reindex = await reindex_status(pool, tenant)
    return _json(stored, reindex)


@router.get("/settings/pipeline/reindex", summary="Progress of the tenant's latest re-index")
async def get_reindex(request: Request, principal: Auth) -> dict[str, Any]:
    return await reindex_status(_pool(request), principal.tenant_id)


async def start_reindex(request: Request, tenant: str, stored: ps.StoredSettings) -> None:
    """Record the re-index (which documents, which fingerprint), then re-submit every document
    of the tenant (its current bytes) to ingest in the background: a large tenant's PUT does not
    wait for thousands of publishes."""
    pool = _pool(request)
    fingerprint = ps.settings_fingerprint(stored.settings, await dimensions(pool))
    docs = await documents.with_bytes(pool, tenant)
    await pool.execute(
        "INSERT INTO tenant_reindex (tenant_id, revision, fingerprint, document_ids)"
        " VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id) DO UPDATE SET"
        " revision = EXCLUDED.revision, fingerprint = EXCLUDED.fingerprint,"
        " document_ids = EXCLUDED.document_ids, started_at = now()",
        tenant,
        stored.revision,
        fingerprint,
        [d["document_id"] for d in docs],
    )
    tasks: set[asyncio.Task[None]] | None = getattr(request.app.state, "reindexes", None)
    if tasks is None:
        tasks = request.app.state.reindexes = set()
    task = asyncio.create_task(_submit_all(request.app, tenant, stored.revision, list(docs)))
    tasks.add(task)  # referenced until done: the event loop holds tasks only weakly
    task.add_done_callback(tasks.discard)


async def _submit_all(app: FastAPI, tenant: str, revision: int, docs: list[Any]) -> None:
    pool: asyncpg.Pool = app.state.store.pool
    js = app.state.runs.nc.jetstream()
    subject = s.ingest_submit(tenant)
    try:
        objects = await js.object_store(DOCUMENTS.name)
        for doc in docs:
            name = f"{tenant}/{doc['document_id']}/{doc['sha256']}"
            try:
                info = await objects.get_info(name)
            except NotFoundError:
                # Bytes gone (e.g. submitted over the bus with its own object): nothing to
                # re-read, so it leaves the count instead of never finishing.
                await pool.execute(
                    "UPDATE tenant_reindex SET document_ids = array_remove(document_ids, $3)"
                    " WHERE tenant_id = $1 AND revision = $2",
                    tenant,
                    revision,
                    doc["document_id"],
                )
                continue
            job = IngestRequested(
                tenant_id=tenant,
                document_id=doc["document_id"],
                object_name=name,
                filename=doc["filename"] or doc["document_id"],
                content_type=doc["content_type"] or "text/plain",
                size=info.size,
                sha256=doc["sha256"],
                title=doc["title"],
                source=doc["source"],
                tags=list(doc["tags"] or []),
            )
            # Same bytes as before, so the upload's message id would be a duplicate: the
            # revision makes each re-index its own job.
            msg_id = f"{tenant}:{job.document_id}:{job.sha256}:reindex:{revision}"
            with nats_span(subject, headers={"Nats-Msg-Id": msg_id}) as headers:
                await js.publish(subject, job.model_dump_json().encode(), headers=headers)
    except Exception:
        log.exception("re-index submission failed", extra={"tenant_id": tenant})


async def reindex_status(pool: asyncpg.Pool, tenant: str) -> dict[str, Any]:
    try:
        row = await pool.fetchrow(
            "SELECT r.revision, r.started_at,"
            " count(d.document_id) AS total,"
            " count(*) FILTER (WHERE d.fingerprint = r.fingerprint AND d.status = 'indexed')"
            "   AS done,"
            " count(*) FILTER (WHERE d.status = 'failed' AND d.updated_at >= r.started_at)"
            "   AS failed,"
            " max(d.updated_at) AS last_update"
            " FROM tenant_reindex r LEFT JOIN documents d"
            "   ON d.tenant_id = r.tenant_id AND d.document_id = ANY(r.document_ids)"
            " WHERE r.tenant_id = $1 GROUP BY r.revision, r.started_at",
            tenant,
        )
    except asyncpg.UndefinedTableError:
        row = None
    if row is None:
        return {
            "state": "idle",
            "revision": None,
            "done": 0,
            "failed": 0,
            "total": 0,
            "started_at": None,
            "finished_at": None,
        }
    done, failed, total = int(row["done"]), int(row["failed"]), int(row["total"])
    finished = done + failed >= total
    return {
        "state": "done" if finished else "running",
        "revision": row["revision"],
        "done": done,
        "failed": failed,
        "total": total,
        "started_at": row["started_at"].isoformat(),
        "finished_at": (row["last_update"] or row["started_at"]).isoformat() if finished else None,
    }


async def ensure_schema(pool: asyncpg.Pool) -> None:
    await ps.ensure_schema(pool)
