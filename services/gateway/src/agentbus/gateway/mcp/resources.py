"""MCP resources: the tenant's indexed documents, read as text.

URIs: `agentbus://documents/{document_id}` (the whole document) and
`agentbus://documents/{document_id}/pages/{page}` (one page, 1-based). The tools link their
citations and search hits with the same URIs, so a client can read what a tool cited. The text is
the indexed passages (`retrieval.passages`), joined with the overlap between neighbours removed;
the raw file stays at `GET /api/v1/documents/{id}/file`.
"""

from __future__ import annotations

import re
from typing import Any

import mcp_types as types
from fastapi import Request
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS

from agentbus.contracts import Passages, PassagesRequest
from agentbus.contracts import subjects as s
from agentbus.runtime.stores import documents

from ..turns import runs_of
from ..upstream import request_reply

PREFIX = "agentbus://documents/"
TEMPLATES = (
    types.ResourceTemplate(
        name="document",
        title="A document",
        uri_template=PREFIX + "{document_id}",
        description="An indexed document of the tenant, as text",
        mime_type="text/plain",
    ),
    types.ResourceTemplate(
        name="document-page",
        title="A page of a document",
        uri_template=PREFIX + "{document_id}/pages/{page}",
        description="One page (1-based) of an indexed document, as text",
        mime_type="text/plain",
    ),
)
_URI = re.compile(
    "^" + re.escape(PREFIX) + r"(?P<doc>[A-Za-z0-9][A-Za-z0-9_-]{0,127})"
    r"(?:/pages/(?P<page>[1-9][0-9]{0,5}))?$"
)
PAGE_SIZE = 50
# Neighbouring chunks share `chunk_overlap` tokens (30 by default): an overlap is looked for
# within this many characters, starting from a probe of the next passage's first characters.
_OVERLAP_MAX = 4000
_PROBE = 16


def document_uri(document_id: str, page: int | None = None) -> str:
    return PREFIX + document_id + (f"/pages/{page}" if page is not None else "")


def parse_uri(uri: str) -> tuple[str, int | None]:
    """(document id, page or None) of one of our URIs; MCP's invalid-params error otherwise."""
    found = _URI.match(uri)
    if found is None:
        raise MCPError(INVALID_PARAMS, f"Resource not found: {uri}")
    page = found.group("page")
    return found.group("doc"), int(page) if page else None


def without_overlap(previous: str, text: str) -> str:
    """`text` without the start it shares with the end of `previous` (the chunker's overlap);
    `text` as it is when they share none."""
    probe = text[:_PROBE]
    if len(probe) < _PROBE:
        return text
    tail_start = max(0, len(previous) - _OVERLAP_MAX)
    at = previous.find(probe, tail_start)
    while at != -1:  # the earliest match is the longest overlap
        shared = len(previous) - at
        if text.startswith(previous[at:]) and shared < len(text):
            return text[shared:].lstrip()
        at = previous.find(probe, at + 1)
    return text


def join_passages(texts: list[str]) -> str:
    joined: list[str] = []
    for text in texts:
        joined.append(without_overlap(joined[-1], text) if joined else text)
    return "\n\n".join(t for t in joined if t)


async def list_resources(
    request: Request, tenant_id: str, cursor: str | None
) -> types.ListResourcesResult:
    """The tenant's indexed documents, newest first, PAGE_SIZE at a time (the cursor is the
    offset)."""
    offset = int(cursor) if cursor and cursor.isdigit() else 0
    rows = await documents.page(
        request.app.state.store.pool, tenant_id, PAGE_SIZE + 1, offset, indexed_only=True
    )
    resources = [
        types.Resource(
            uri=document_uri(r["document_id"]),
            name=r["document_id"],
            title=r["title"] or r["filename"] or r["document_id"],
            description=_describe(r),
            mime_type="text/plain",
        )
        for r in rows[:PAGE_SIZE]
    ]
    more = len(rows) > PAGE_SIZE
    return types.ListResourcesResult(
        resources=resources, next_cursor=str(offset + PAGE_SIZE) if more else None
    )


def _describe(row: Any) -> str:
    parts = [row["filename"]] if row["filename"] else []
    if row["page_count"]:
        parts.append(f"{row['page_count']} pages")
    parts.append(f"{row['chunk_count']} passages")
    return ", ".join(parts)


async def passages(request: Request, req: PassagesRequest) -> Passages:
    nc = runs_of(request).nc
    return await request_reply(nc, s.RETRIEVAL_PASSAGES, req, Passages, "Reading the document")


async def read_resource(request: Request, tenant_id: str, uri: str) -> types.ReadResourceResult:
    document_id, page = parse_uri(uri)
    found = await passages(
        request, PassagesRequest(tenant_id=tenant_id, document_id=document_id, page=page)
    )
    if found.error:
        raise MCPError(INVALID_PARAMS, f"Reading {uri} failed: {found.error}")
    if not found.found:
        raise MCPError(INVALID_PARAMS, f"Resource not found: {uri}")
    if not found.passages:
        raise MCPError(
            INVALID_PARAMS, f"Resource not found: {uri} (the document has no page {page})"
        )
    text = join_passages([p.text for p in found.passages])
    if found.truncated:
        text += "\n\n[…the document continues; read it page by page]"
    meta = {"title": found.title, "truncated": found.truncated}
    return types.ReadResourceResult(
        contents=[
            types.TextResourceContents(uri=uri, mime_type="text/plain", text=text, _meta=meta)
        ]
    )
