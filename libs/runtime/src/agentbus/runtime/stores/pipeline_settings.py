"""Per-tenant RAG pipeline settings in PostgreSQL: written by the gateway, read by ingest
(chunking, embedding model) and retrieval (query embedding model, method, top_k, threshold).

One row per tenant that changed something; a tenant without a row gets each service's own
configuration (`pipeline.yaml`, the retrieval settings), which `PipelineSettings()` mirrors.
The services read the row on every job or search (a primary-key lookup), so a change applies at
once on every replica with no cache to invalidate.

`vectors_fingerprint` is what ingest stores per document (`documents.fingerprint`): the
settings that shape stored chunks and vectors. The gateway computes the same value for a
tenant's new settings and counts the documents already indexed with it (re-index progress).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal, Self

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..migrations import Migration
from .schema import LockKey, migrate

# Bump when the chunking code changes its output for the same config (splitter, tokenizer or
# normalisation), so that every document is re-indexed rather than reported "unchanged".
CHUNKER_VERSION = 1

DEFAULT_EMBEDDING_MODEL = "local/all-MiniLM-L6-v2"

ChunkingMethod = Literal["sentence", "token", "markdown"]
RetrievalMethod = Literal["hybrid", "vector", "keyword"]
CHUNKING_METHODS: tuple[str, ...] = ("sentence", "token", "markdown")
RETRIEVAL_METHODS: tuple[str, ...] = ("hybrid", "vector", "keyword")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChunkingSettings(_Section):
    method: ChunkingMethod = "sentence"
    size: int = Field(default=200, ge=32, le=8192, description="Maximum tokens per chunk")
    overlap: int = Field(default=30, ge=0, description="Tokens shared by adjacent chunks")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Self:
        if self.overlap >= self.size:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than size ({self.size})")
        return self


class EmbeddingSettings(_Section):
    model: str = Field(default=DEFAULT_EMBEDDING_MODEL, min_length=1, max_length=200)


class RetrievalSettings(_Section):
    method: RetrievalMethod = "hybrid"
    # 5: what the agent's document search asked for before settings were per tenant.
    top_k: int = Field(default=5, ge=1, le=100)
    threshold: float | None = Field(default=None, ge=0, le=1, description="Minimum hit score")


class PipelineSettings(_Section):
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)

    def vectors_changed(self, other: PipelineSettings) -> bool:
        """Whether stored chunks or vectors differ between the two (a re-index is needed)."""
        return (self.chunking, self.embedding) != (other.chunking, other.embedding)


def vectors_fingerprint(
    strategy: str, chunk_size: int, chunk_overlap: int, model: str, dimensions: int
) -> str:
    """A short stable hash of the settings that shape chunks and vectors (ingest's fingerprint).

    Batch size, file limit and extraction settings are left out: they do not change what is
    stored in the vector index.
    """
    material = {
        "chunker": CHUNKER_VERSION,
        "chunking": {
            "strategy": strategy,
            "chunk_size": chunk_size,
            "chunk_overlap": chunk_overlap,
        },
        "embedding": {"model": model, "dimensions": dimensions},
    }
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def settings_fingerprint(settings: PipelineSettings, dimensions: int) -> str:
    c = settings.chunking
    return vectors_fingerprint(c.method, c.size, c.overlap, settings.embedding.model, dimensions)


SCHEMA = """
CREATE TABLE IF NOT EXISTS tenant_pipeline_settings (
    tenant_id   text PRIMARY KEY,
    settings    jsonb NOT NULL,
    revision    integer NOT NULL DEFAULT 1,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text
);
CREATE TABLE IF NOT EXISTS tenant_reindex (
    tenant_id     text PRIMARY KEY,
    revision      integer NOT NULL,
    fingerprint   text NOT NULL,
    document_ids  text[] NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now()
);
"""

MIGRATIONS = (Migration(1, "tenant pipeline settings and re-index jobs", (SCHEMA,)),)


class StoredSettings(BaseModel):
    settings: PipelineSettings
    revision: int = 0
    updated_at: datetime | None = None
    updated_by: str | None = None


async def ensure_schema(pool: asyncpg.Pool) -> None:
    await migrate(pool, LockKey.PIPELINE_SETTINGS, MIGRATIONS)


async def load(conn: asyncpg.Pool | asyncpg.Connection, tenant_id: str) -> StoredSettings:
    """The tenant's settings; the defaults (revision 0) when it never changed any, or before
    the gateway has created the table."""
    try:
        row = await conn.fetchrow(
            "SELECT settings, revision, updated_at, updated_by FROM tenant_pipeline_settings"
            " WHERE tenant_id = $1",
            tenant_id,
        )
    except asyncpg.UndefinedTableError:
        row = None
    if row is None:
        return StoredSettings(settings=PipelineSettings())
    raw: Any = row["settings"]
    data = json.loads(raw) if isinstance(raw, str) else raw
    return StoredSettings(
        settings=PipelineSettings.model_validate(data),
        revision=row["revision"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


async def save(
    conn: asyncpg.Pool | asyncpg.Connection,
    tenant_id: str,
    settings: PipelineSettings,
    updated_by: str | None,
) -> StoredSettings:
    row = await conn.fetchrow(
        "INSERT INTO tenant_pipeline_settings (tenant_id, settings, updated_by)"
        " VALUES ($1, $2::jsonb, $3) ON CONFLICT (tenant_id) DO UPDATE SET"
        " settings = EXCLUDED.settings, updated_by = EXCLUDED.updated_by,"
        " revision = tenant_pipeline_settings.revision + 1, updated_at = now()"
        " RETURNING revision, updated_at, updated_by",
        tenant_id,
        settings.model_dump_json(),
        updated_by,
    )
    assert row is not None
    return StoredSettings(
        settings=settings,
        revision=row["revision"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )
