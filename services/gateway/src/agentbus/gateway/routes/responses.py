"""What the native chat and document routes answer, as models, so `/docs` and the OpenAPI
document show each body. Fields beyond these are kept (extra="allow"): the models describe what
a client may rely on without dropping anything a route adds later."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class Thread(Answer):
    thread_id: str
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    status: str = Field(description="idle, busy, interrupted or error (the latest run's outcome)")
    created_at: str = Field(description="ISO-8601")
    updated_at: str = Field(description="ISO-8601")


class ThreadPage(Answer):
    items: list[Thread]
    limit: int
    offset: int


class ChatAnswer(Answer):
    run_id: str
    thread_id: str
    status: str = Field(description="How the run ended: success, error, interrupted, timeout")
    text: str = Field(description="The answer, with [n] markers for its citations")
    citations: list[dict[str, Any]] = Field(
        description="The passages cited: title, page, chunks, score and a link target"
    )


class ThreadMessages(Answer):
    thread_id: str
    messages: list[dict[str, Any]] = Field(description="The thread's messages, oldest first")


class UploadAccepted(Answer):
    document_id: str
    version: int = Field(description="The version these bytes are (1 for a new document)")
    sha256: str
    status: Literal["queued", "unchanged"]
    events: str = Field(description="Where its indexing progress streams (SSE)")


class DocumentSummary(Answer):
    document_id: str
    title: str | None = None
    filename: str | None = None
    status: str = Field(description="processing, stored (chunks searchable), indexed or failed")
    chunk_count: int | None = None
    page_count: int | None = None
    error: str | None = None
    updated_at: datetime | None = None


class DocumentPage(Answer):
    items: list[DocumentSummary]
    limit: int
    offset: int


class Document(DocumentSummary):
    content_type: str | None = None
    entity_count: int | None = None
    created_at: datetime | None = None
