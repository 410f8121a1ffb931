"""Retrieval settings (`AGENTBUS_*`): the shared ones plus the query embedding model."""

from __future__ import annotations

from pydantic import Field

from agentbus.runtime.settings import Settings


class RetrievalSettings(Settings):
    embedding_model: str = Field(
        default="local/all-MiniLM-L6-v2",
        description="LiteLLM embedding model for queries; must match the one ingest used",
    )
    embedding_dimensions: int = Field(default=384, ge=1, le=16000)
