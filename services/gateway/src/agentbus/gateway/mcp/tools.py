"""The MCP tools: one per assistant and `search_documents` over the tenant's knowledge (the
retrieval service's hybrid search).

An assistant's tool takes its graph's input schema (LangGraph's `/assistants/{id}/schemas`),
plus `thread_id`. A graph whose input has `messages` also takes `message`, a plain question: that
is a chat turn (the thread's messages record it, the answer comes with its citations). Any other
input runs the graph as the LangGraph API does and answers with its final values. A graph
without a usable object schema keeps the chat form ({message, thread_id?}).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import mcp_types as types
from fastapi import HTTPException, Request

from agentbus.contracts import ErrorReply, SearchRequest, SearchResult
from agentbus.contracts import subjects as s
from agentbus.runtime.traces import nats_span

from ..auth.deps import Principal
from ..langgraph.encode import Encoder
from ..langgraph.models import RunCreate
from ..langgraph.routes import service_of
from ..langgraph.service import new_uuid
from ..ratelimit import per_tenant
from ..turns import follow, runs_of, start_turn

SEARCH = "search_documents"

MESSAGE: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 32000,
    "description": "A question for the assistant (a user message)",
}
THREAD: dict[str, Any] = {
    "type": "string",
    "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$",
    "description": "Continue this thread (created on first use); a new one when omitted",
}
THREAD_ID = re.compile(THREAD["pattern"])
ASSISTANT_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"message": MESSAGE, "thread_id": THREAD},
    "required": ["message"],
    "additionalProperties": False,
}


def tool_input(graph_input: Any) -> dict[str, Any]:
    """A tool's input schema from its graph's input schema (see the module's docstring)."""
    properties = graph_input.get("properties") if isinstance(graph_input, dict) else None
    if not isinstance(properties, dict) or not properties or "thread_id" in properties:
        return ASSISTANT_INPUT
    schema: dict[str, Any] = copy.deepcopy(graph_input)
    schema["type"] = "object"
    schema["properties"] = {**schema["properties"], "thread_id": THREAD}
    required = [r for r in schema.get("required") or [] if r != "messages"]
    if "messages" in properties and "message" not in properties:
        schema["properties"]["message"] = MESSAGE
        # Either the graph's own `messages` or the plain `message`.
        schema["anyOf"] = [{"required": ["message"]}, {"required": ["messages"]}]
    schema["required"] = required
    return schema


def takes_message(schema: dict[str, Any], arguments: dict[str, Any]) -> bool:
    """Whether a call is a chat turn: `message` given to a tool that adds it."""
    return "message" in arguments and schema["properties"].get("message") is MESSAGE


SEARCH_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 4000},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 8},
    },
    "required": ["query"],
    "additionalProperties": False,
}


async def input_schemas(
    request: Request, tenant_id: str, served: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Each served assistant's tool input, from its graph's input schema."""
    svc = service_of(request)
    found: dict[str, dict[str, Any]] = {}
    for assistant_id in served:
        try:
            described = await svc.assistants.describe(tenant_id, assistant_id, "schemas")
        except HTTPException:
            described = None  # the graph cannot describe itself: the chat form
        graph_input = described.get("input_schema") if isinstance(described, dict) else None
        found[assistant_id] = tool_input(graph_input)
    return found


def list_tools(served: dict[str, str], schemas: dict[str, dict[str, Any]]) -> list[types.Tool]:
    tools = [
        types.Tool(
            name=assistant_id,
            description=f"Run the {assistant_id!r} assistant: {description}. Give its graph's "
            "input, or a `message` when it takes one (answered with the run's citations); "
            "`thread_id` continues a thread.",
            input_schema=schemas.get(assistant_id, ASSISTANT_INPUT),
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


def _answer(values: dict[str, Any]) -> str:
    """The text of a run's final values: its last AI message, else the values as JSON."""
    messages = values.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("type") == "ai":
                return str(message.get("content") or "")
    return json.dumps(values, ensure_ascii=False, default=str)


async def run_graph(
    request: Request, principal: Principal, assistant_id: str, arguments: dict[str, Any]
) -> types.CallToolResult:
    """Run the assistant's graph on `arguments` (its input) through the LangGraph API's path:
    the same admission on the thread, events and final values as `/threads/{id}/runs/wait`."""
    arguments = dict(arguments)
    thread_id = arguments.pop("thread_id", None)
    if thread_id is not None and (not isinstance(thread_id, str) or not THREAD_ID.match(thread_id)):
        return error("`thread_id` must be 1-128 of A-Z a-z 0-9 _ -")
    await per_tenant("chat")(request, principal)
    svc = service_of(request)
    thread_id = thread_id or new_uuid()
    body = RunCreate(
        assistant_id=assistant_id,
        input=arguments,
        if_not_exists="create",
        multitask_strategy="enqueue",
        metadata={"api": "mcp"},
    )
    created = await svc.create(principal, thread_id, body)
    row = await svc.run_row(principal.tenant_id, thread_id, created.run.run_id)
    encoder = Encoder(frozenset(), row["run_id"], thread_id, row["assistant_id"])
    status = None
    async for event in svc.events(principal.tenant_id, row):
        if event is not None:
            encoder.parts(event)
            status = event.status if event.type == "end" else status
    result = encoder.result()
    outcome = {"run_id": row["run_id"], "thread_id": thread_id, "status": status}
    if "__error__" in result:
        return types.CallToolResult(
            content=[types.TextContent(text=f"The run failed: {result['__error__']}")],
            structured_content={**outcome, "error": result["__error__"]},
            is_error=True,
        )
    return types.CallToolResult(
        content=[types.TextContent(text=_answer(result))],
        structured_content={**outcome, "values": result},
    )


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
