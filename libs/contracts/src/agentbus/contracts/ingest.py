"""Document ingestion: the job, its progress and its outcome."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Contract, Event, JsonObject, SubjectToken, TenantContract

ChunkStrategy = Literal["sentence", "token", "markdown"]
IngestStage = Literal["received", "parsed", "chunked", "embedded", "stored", "graphed"]


class ChunkingOverrides(Contract):
    """Per-request overrides of the pipeline config."""

    chunk_size: int | None = Field(default=None, ge=32, le=8192)
    chunk_overlap: int | None = Field(default=None, ge=0, le=4096)
    strategy: ChunkStrategy | None = None


class IngestRequested(Event):
    """Index one document whose bytes are in the Object Store bucket `documents`."""

    document_id: SubjectToken
    object_name: str = Field(min_length=1, max_length=1024)
    filename: str = Field(min_length=1, max_length=1024)
    content_type: str = Field(min_length=1, max_length=255)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    title: str | None = Field(default=None, max_length=1024)
    source: str | None = Field(default=None, max_length=1024)
    tags: list[str] = Field(default_factory=list, max_length=100)
    metadata: JsonObject = Field(default_factory=dict)
    chunking: ChunkingOverrides = Field(default_factory=ChunkingOverrides)
    replace: bool = Field(default=True, description="Replace an earlier version's chunks")


class IngestProgress(Event):
    document_id: SubjectToken
    sha256: str | None = Field(default=None, description="The document version being indexed")
    stage: IngestStage
    done: int = Field(default=0, ge=0)
    total: int = Field(default=0, ge=0)
    detail: str | None = None


class DocumentIndexed(Event):
    document_id: SubjectToken
    sha256: str
    chunks: int = Field(ge=0)
    pages: int = Field(default=0, ge=0)
    entities: int = Field(default=0, ge=0)
    unchanged: bool = Field(default=False, description="Same bytes as before: nothing rewritten")
    duration_ms: float = Field(default=0.0, ge=0)


class IngestFailed(Event):
    document_id: SubjectToken
    sha256: str | None = Field(default=None, description="The document version that failed")
    stage: IngestStage | Literal["validate"]
    reason: str = Field(min_length=1)
    retryable: bool = False


class DeleteDocument(TenantContract):
    """Remove a document: its chunks, its graph node and links, and its stored bytes."""

    document_id: SubjectToken


class DocumentDeleted(TenantContract):
    """Reply to DeleteDocument. `found` is false when the tenant has no such document."""

    document_id: SubjectToken
    found: bool
    chunks_removed: int = Field(default=0, ge=0)
