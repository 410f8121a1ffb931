"""A document's passages in reading order (`retrieval.passages`): reading a document, as MCP's
resources/read does, where search would pick passages by meaning.

The chunks are returned as indexed; neighbours share `chunk_overlap` tokens, which the reader
removes when it joins them (the gateway's MCP resources). Text past `max_chars` is cut and the
answer says so, so a long manual never exceeds the bus's message size.
"""

from __future__ import annotations

import asyncpg

from agentbus.contracts import Passage, Passages, PassagesRequest

from .chunk_reads import select_chunks

_SQL = (
    "SELECT chunk_index, page, title, text FROM chunks WHERE tenant_id = $1 AND document_id = $2"
    " AND ($3::int IS NULL OR page = $3) ORDER BY chunk_index"
)
_EXISTS = "SELECT EXISTS (SELECT 1 FROM chunks WHERE tenant_id = $1 AND document_id = $2)"


async def passages(pool: asyncpg.Pool, req: PassagesRequest) -> Passages:
    rows = await select_chunks(
        pool, "a document's passages", _SQL, req.tenant_id, req.document_id, req.page
    )
    found = bool(rows) or (
        req.page is not None and bool(await pool.fetchval(_EXISTS, req.tenant_id, req.document_id))
    )
    out: list[Passage] = []
    left, truncated = req.max_chars, False
    for row in rows:
        text: str = row["text"]
        if len(text) > left:
            text, truncated = text[:left], True
        if text:
            out.append(Passage(chunk_index=row["chunk_index"], page=row["page"], text=text))
        left -= len(text)
        if truncated:
            break
    return Passages(
        tenant_id=req.tenant_id,
        document_id=req.document_id,
        found=found,
        title=rows[0]["title"] if rows else None,
        passages=out,
        truncated=truncated,
    )
