"""Search over document chunks and named graph queries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Contract, JsonObject, TenantContract

SearchMode = Literal["vector", "keyword", "hybrid"]


class SearchFilters(Contract):
    document_ids: list[str] = Field(default_factory=list, max_length=1000)
    source: str | None = None
    tags: list[str] = Field(default_factory=list, max_length=100)


class SearchRequest(TenantContract):
    query: str = Field(min_length=1, max_length=4000)
    mode: SearchMode = "hybrid"
    top_k: int = Field(default=8, ge=1, le=100)
    filters: SearchFilters = Field(default_factory=SearchFilters)
    min_score: float | None = None


class SearchHit(Contract):
    chunk_id: str
    document_id: str
    title: str | None = None
    source: str | None = None
    page: int | None = None
    chunk_index: int = Field(ge=0)
    text: str
    score: float
    scores: dict[str, float] = Field(
        default_factory=dict, description="Score per method, e.g. {'vector': .8, 'keyword': .2}"
    )
    metadata: JsonObject = Field(default_factory=dict)


class SearchResult(TenantContract):
    query: str
    mode: SearchMode
    hits: list[SearchHit] = Field(default_factory=list)
    took_ms: float = Field(default=0.0, ge=0)
    error: str | None = None


# Enough for a long manual, and well under NATS's 1 MB message limit even in 4-byte UTF-8.
PASSAGES_MAX_CHARS = 200_000


class PassagesRequest(TenantContract):
    """A document's indexed text in reading order (all of it, or one page): for reading a
    document, e.g. an MCP resource, where search would pick passages by meaning."""

    document_id: str = Field(min_length=1, max_length=128)
    page: int | None = Field(default=None, ge=1, description="1-based; None for the whole document")
    max_chars: int = Field(default=PASSAGES_MAX_CHARS, ge=1, le=PASSAGES_MAX_CHARS)


class Passage(Contract):
    chunk_index: int = Field(ge=0)
    page: int | None = None
    text: str


class Passages(TenantContract):
    """The passages of one of the tenant's documents; `found` is False for an id the tenant does
    not have (another tenant's document is the same answer), `truncated` when `max_chars` cut
    the text short."""

    document_id: str
    found: bool = False
    title: str | None = None
    page_count: int | None = None
    passages: list[Passage] = Field(default_factory=list)
    truncated: bool = False
    error: str | None = None


GraphQueryName = Literal[
    "entity_neighbourhood",
    "people_by_skill",
    "owners_of",
    "documents_mentioning",
    "skills_of",
    "work_of",
]


class GraphQuery(TenantContract):
    """A named, parameterised graph query. Never Cypher text from a caller."""

    name: GraphQueryName
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    limit: int = Field(default=25, ge=1, le=500)


class GraphResult(TenantContract):
    name: GraphQueryName
    rows: list[JsonObject] = Field(default_factory=list)
    took_ms: float = Field(default=0.0, ge=0)
    error: str | None = None
