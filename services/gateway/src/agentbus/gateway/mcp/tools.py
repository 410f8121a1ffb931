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
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from fastapi import HTTPException, Request

from agentbus.contracts import RunEvent, SearchRequest, SearchResult
from agentbus.contracts import subjects as s

from ..auth.deps import Principal
from ..langgraph.encode import Encoder
from ..langgraph.models import RunCreate
from ..langgraph.routes import service_of
from ..langgraph.runs import new_uuid
from ..ratelimit import per_tenant
from ..turns import follow, runs_of, start_turn
from ..upstream import UpstreamError, request_reply
from .resources import document_uri

log = logging.getLogger("agentbus.gateway.mcp")

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


# Reports a step of a run to a caller that asked for progress (`_meta.progressToken`); the
# SDK sends nothing for a caller that did not.
Progress = Callable[[float, str], Awaitable[None]]


def progress_line(event: RunEvent) -> str | None:
    """What a person following the run would read for `event`; None for tokens and values."""
    data = event.data
    if event.type == "routing":
        names = data.get("specialists") or []
        return f"routed to {', '.join(map(str, names))}" if names else "answering"
    if event.type == "model_selection":
        return f"model {data.get('model') or data.get('group') or '?'} ({data.get('group', '?')})"
    if event.type == "tool_start":
        return f"calling {data.get('tool', 'a tool')}"
    if event.type == "tool_end":
        return f"{data.get('tool', 'a tool')} {'done' if data.get('ok', True) else 'failed'}"
    if event.type == "node_start" and event.node:
        return f"step {event.node}"
    if event.type == "citations":
        return f"{len(data.get('citations') or [])} sources cited"
    if event.type == "end":
        return f"run {event.status}"
    return None


async def report(progress: Progress, event: RunEvent) -> None:
    line = progress_line(event)
    if line is None:
        return
    try:
        # The event's sequence number only grows, as MCP requires of progress values.
        await progress(float(event.seq), line)
    except Exception:
        # A notification that cannot be sent (the caller went away) does not stop the call:
        # the run goes on and the answer is still returned or recorded.
        log.debug("MCP progress not sent", exc_info=True)


def _link(cite: dict[str, Any]) -> types.ResourceLink:
    """A citation or hit as a link to its page, readable with resources/read."""
    doc, page = str(cite["document_id"]), cite.get("page")
    title = str(cite.get("title") or doc)
    return types.ResourceLink(
        uri=document_uri(doc, page if isinstance(page, int) and page >= 1 else None),
        name=doc,
        title=title + (f", page {page}" if page is not None else ""),
        mime_type="text/plain",
    )


async def ask(
    request: Request,
    principal: Principal,
    assistant_id: str,
    arguments: dict[str, Any],
    progress: Progress,
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
        await report(progress, event)
        if event.type == "error":
            errors.append(str(event.data.get("message", "")))
        if event.type != "end":
            continue
        outcome = {"run_id": turn.run_id, "thread_id": turn.thread_id, "status": event.status}
        if event.status not in ("success", "interrupted"):
            return error(f"The run ended {event.status}: {'; '.join(errors) or 'no answer'}")
        answer = str(event.data.get("answer") or "")
        citations = [c for c in event.data.get("citations") or [] if isinstance(c, dict)]
        links = [_link(c) for c in citations if c.get("document_id")]
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
    request: Request,
    principal: Principal,
    assistant_id: str,
    arguments: dict[str, Any],
    progress: Progress,
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
            await report(progress, event)
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


async def find(request: Request, principal: Principal, query: Any, top_k: Any) -> SearchResult:
    """The tenant's passages for `query` (retrieval's hybrid search); a ValueError for bad
    arguments, an HTTPException when retrieval cannot answer."""
    req = SearchRequest(tenant_id=principal.tenant_id, query=query, top_k=top_k)
    await per_tenant("chat")(request, principal)
    nc = runs_of(request).nc
    found = await request_reply(
        nc, s.RETRIEVAL_SEARCH, req, SearchResult, "Searching the documents"
    )
    if found.error:
        raise UpstreamError("Searching the documents", "search_failed", found.error)
    return found


def hits_of(found: SearchResult) -> list[dict[str, Any]]:
    return [
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


async def search(
    request: Request, principal: Principal, arguments: dict[str, Any]
) -> types.CallToolResult:
    try:
        found = await find(request, principal, arguments.get("query"), arguments.get("top_k", 8))
    except ValueError as exc:
        return error(f"Bad arguments: {exc}")
    hits = hits_of(found)
    text = json.dumps(hits, ensure_ascii=False) if hits else "No passage matches the query."
    links = [_link(h) for h in hits]
    return types.CallToolResult(
        content=[types.TextContent(text=text), *links],
        structured_content={"query": found.query, "hits": hits},
    )
