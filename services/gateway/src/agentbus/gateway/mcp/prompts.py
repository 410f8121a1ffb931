"""MCP prompts: the tenant's knowledge packed for the client's own model.

- `answer_from_documents {question, top_k?}`: the passages retrieval finds for the question, each
  an embedded resource (its page's URI), then the question with the instruction to answer only
  from them and cite them by number, as our own assistants do.
- `summarize_document {document_id, page?}`: the document's text (what resources/read returns)
  and the instruction to summarise it.

The tools run our assistants on the platform; prompts are for a client that answers with its own
model and only wants our retrieval.
"""

from __future__ import annotations

import mcp_types as types
from fastapi import Request
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS

from ..auth.deps import Principal
from .resources import document_uri, read_resource
from .tools import find

ANSWER = "answer_from_documents"
SUMMARIZE = "summarize_document"

PROMPTS = (
    types.Prompt(
        name=ANSWER,
        title="Answer from the documents",
        description="Passages from the tenant's documents for a question, with the instruction "
        "to answer only from them and cite them as [n].",
        arguments=[
            types.PromptArgument(name="question", description="The question", required=True),
            types.PromptArgument(
                name="top_k", description="How many passages (1-20, default 5)", required=False
            ),
        ],
    ),
    types.Prompt(
        name=SUMMARIZE,
        title="Summarize a document",
        description="A document's text (or one page's) with the instruction to summarise it.",
        arguments=[
            types.PromptArgument(
                name="document_id", description="The document's id", required=True
            ),
            types.PromptArgument(
                name="page", description="Only this page (1-based)", required=False
            ),
        ],
    ),
)


def _bad(text: str) -> MCPError:
    return MCPError(INVALID_PARAMS, text)


def _int(
    arguments: dict[str, str], name: str, default: int | None, low: int, high: int
) -> int | None:
    raw = arguments.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _bad(f"`{name}` must be a whole number from {low} to {high}")
    return int(raw)


async def get_prompt(
    request: Request, principal: Principal, name: str, arguments: dict[str, str]
) -> types.GetPromptResult:
    if name == ANSWER:
        return await _answer(request, principal, arguments)
    if name == SUMMARIZE:
        return await _summarize(request, principal, arguments)
    raise _bad(f"Unknown prompt {name!r}; known: {ANSWER}, {SUMMARIZE}")


async def _answer(
    request: Request, principal: Principal, arguments: dict[str, str]
) -> types.GetPromptResult:
    question = (arguments.get("question") or "").strip()
    if not question:
        raise _bad("`question` is required")
    top_k = _int(arguments, "top_k", 5, 1, 20)
    try:
        found = await find(request, principal, question, top_k)
    except ValueError as exc:
        raise _bad(f"Bad arguments: {exc}") from None
    messages = [
        types.PromptMessage(
            role="user",
            content=types.EmbeddedResource(
                resource=types.TextResourceContents(
                    uri=document_uri(h.document_id, h.page),
                    mime_type="text/plain",
                    text=f"[{n}] {h.title or h.document_id}"
                    + (f", page {h.page}" if h.page else "")
                    + f"\n{h.text}",
                )
            ),
        )
        for n, h in enumerate(found.hits, start=1)
    ]
    if messages:
        instruction = (
            f"Answer the question from the {len(messages)} numbered passages above only, and "
            "cite each passage you use as [n]. If they do not answer it, say so."
        )
    else:
        instruction = "No passage of the documents matches the question: say so, do not guess."
    messages.append(
        types.PromptMessage(
            role="user", content=types.TextContent(text=f"{instruction}\n\nQuestion: {question}")
        )
    )
    return types.GetPromptResult(
        description=f"{len(found.hits)} passages for: {question[:80]}", messages=messages
    )


async def _summarize(
    request: Request, principal: Principal, arguments: dict[str, str]
) -> types.GetPromptResult:
    document_id = (arguments.get("document_id") or "").strip()
    if not document_id:
        raise _bad("`document_id` is required")
    page = _int(arguments, "page", None, 1, 999_999)
    uri = document_uri(document_id, page)
    read = await read_resource(request, principal.tenant_id, uri)
    content = read.contents[0]
    what = f"page {page} of this document" if page else "this document"
    return types.GetPromptResult(
        description=f"Summarize {uri}",
        messages=[
            types.PromptMessage(role="user", content=types.EmbeddedResource(resource=content)),
            types.PromptMessage(
                role="user",
                content=types.TextContent(
                    text=f"Summarize {what} in a few sentences: its purpose, the main steps or "
                    "facts, and anything a reader must not miss."
                ),
            ),
        ],
    )
