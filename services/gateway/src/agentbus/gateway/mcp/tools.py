"""The MCP tools: one per assistant (a turn on a thread, answered with its citations) and
`search_documents` over the tenant's knowledge (the retrieval service's hybrid search)."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from fastapi import HTTPException, Request

from agentbus.contracts import ErrorReply, SearchRequest, SearchResult
from agentbus.contracts import subjects as s
from agentbus.runtime.traces import nats_span

from ..auth.deps import Principal
from ..ratelimit import per_tenant
from ..turns import follow, runs_of, start_turn

SEARCH = "search_documents"

ASSISTANT_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "minLength": 1, "maxLength": 32000},
        "thread_id": {
            "type": "string",
            "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$",
            "description": "Continue this thread (created on first use); a new one when omitted",
        },
    },
    "required": ["message"],
    "additionalProperties": False,
}
SEARCH_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 4000},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 8},
    },
    "required": ["query"],
    "additionalProperties": False,
}


def list_tools(served: dict[str, str]) -> list[types.Tool]:
    tools = [
        types.Tool(
            name=assistant_id,
            description=f"Ask the {assistant_id!r} assistant: {description}. Answers with the "
            "run's citations (resource links to the documents).",
            input_schema=ASSISTANT_INPUT,
        )
        for assistant_id, description in served.items()
    ]
    tools.append(
        types.Tool(
            name=SEARCH,
            description="Search the tenant's documents (hybrid vector and keyword search); "
            "returns the matching passages with their document, title and page.",
            input_schema=SEARCH_INPUT,
        )
    )
    return tools


def error(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)


def _link(base_url: str, cite: dict[str, Any]) -> types.ResourceLink:
    doc, page = str(cite["document_id"]), cite.get("page")
    title = str(cite.get("title") or doc)
    return types.ResourceLink(
        uri=f"{base_url}api/v1/documents/{doc}" + (f"#page={page}" if page is not None else ""),
        name=doc,
        title=title + (f", page {page}" if page is not None else ""),
    )


async def ask(
    request: Request, principal: Principal, assistant_id: str, arguments: dict[str, Any]
) -> types.CallToolResult:
    message = arguments.get("message")
    thread_id = arguments.get("thread_id")
    if not isinstance(message, str) or not message.strip():
        return error("`message` is required: the question for the assistant")
    if thread_id is not None and not isinstance(thread_id, str):
        return error("`thread_id` must be a string")
    await per_tenant("chat")(request, principal)
    turn = await start_turn(
        request,
        principal,
        messages=[{"role": "user", "content": message}],
        thread_id=thread_id,
        assistant_id=assistant_id,
        title=message[:80],
        metadata={"api": "mcp"},
    )
    errors: list[str] = []
    async for event in await follow(runs_of(request), principal.tenant_id, turn.run_id):
        if event is None:
            continue
        if event.type == "error":
            errors.append(str(event.data.get("message", "")))
        if event.type != "end":
            continue
        outcome = {"run_id": turn.run_id, "thread_id": turn.thread_id, "status": event.status}
        if event.status not in ("success", "interrupted"):
            return error(f"The run ended {event.status}: {'; '.join(errors) or 'no answer'}")
        answer = str(event.data.get("answer") or "")
        citations = [c for c in event.data.get("citations") or [] if isinstance(c, dict)]
        links = [_link(str(request.base_url), c) for c in citations if c.get("document_id")]
        return types.CallToolResult(
            content=[types.TextContent(text=answer), *links],
            structured_content={**outcome, "answer": answer, "citations": citations},
        )
    return error("The run's events ended without its end")


async def search(
    request: Request, principal: Principal, arguments: dict[str, Any]
) -> types.CallToolResult:
    try:
        req = SearchRequest(
            tenant_id=principal.tenant_id,
            query=arguments.get("query"),  # type: ignore[arg-type]
            top_k=arguments.get("top_k", 8),
        )
    except ValueError as exc:
        return error(f"Bad arguments: {exc}")
    await per_tenant("chat")(request, principal)
    nc = runs_of(request).nc
    try:
        with nats_span(s.RETRIEVAL_SEARCH, "request") as headers:
            reply = await nc.request(
                s.RETRIEVAL_SEARCH, req.model_dump_json().encode(), timeout=30, headers=headers
            )
    except Exception:
        raise HTTPException(503, "The retrieval service did not answer") from None
    try:
        found = SearchResult.model_validate_json(reply.data)
    except ValueError:
        return error(f"Search refused: {ErrorReply.model_validate_json(reply.data).error}")
    if found.error:
        return error(f"Search failed: {found.error}")
    hits = [
        {
            "document_id": h.document_id,
            "title": h.title,
            "page": h.page,
            "chunk_index": h.chunk_index,
            "score": round(h.score, 4),
            "text": h.text,
        }
        for h in found.hits
    ]
    text = json.dumps(hits, ensure_ascii=False) if hits else "No passage matches the query."
    links = [_link(str(request.base_url), h) for h in hits]
    return types.CallToolResult(
        content=[types.TextContent(text=text), *links],
        structured_content={"query": found.query, "hits": hits},
    )
