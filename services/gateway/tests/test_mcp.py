"""MCP at /mcp with the official `mcp` SDK client (streamable HTTP), unmodified, against the real
platform: tools/list (each assistant plus search_documents), tools/call answering with citations
and reporting progress, threads, the documents as resources, the prompts, the gateway's API keys,
bad input as tool errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from agentbus.contracts import new_id
from agentbus.gateway.mcp.resources import document_uri
from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e

DOC = (
    "Bicycle shed rules. The bicycle shed behind building C opens at seven. "
    "Cargo bikes park in the covered bay next to the pump station."
)


KILN = (
    "# Kiln safety\n\nThe studio kiln fires stoneware at up to 1260 degrees Celsius. "
    "Never open the lid above 200 degrees.\n\nLoad shelves from the bottom up and leave "
    "two fingers between pots."
)
PASSWORD = "Correct-Horse-9"


def dev_key(platform: Platform) -> str:
    return (platform.data_dir / "dev-api-key").read_text().strip()


@asynccontextmanager
async def connect(
    platform: Platform, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    """Entered and left in the test's own task (the SDK's task groups require it)."""
    headers = headers or {"Authorization": f"Bearer {dev_key(platform)}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=120) as http,
        streamable_http_client(f"{platform.gateway_url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        yield client


async def upload(platform: Platform, filename: str, text: str, title: str) -> str:
    """Upload a document as the dev tenant and wait until it is indexed; its id."""
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers={"x-api-key": dev_key(platform)}, timeout=120
    ) as http:
        response = await http.post(
            "/api/v1/documents",
            files={"file": (filename, text.encode(), "text/plain")},
            data={"title": title},
        )
        assert response.status_code == 202, response.text
        doc = response.json()
        async with http.stream("GET", doc["events"]) as events:
            assert "event: indexed" in (await events.aread()).decode()
    return str(doc["document_id"])


def text_of(result: types.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def test_tools_are_the_assistants_and_search(platform: Platform) -> None:
    async with connect(platform) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert {"agent", "echo", "steps", "search_documents"} <= set(tools)
        assert tools["search_documents"].input_schema["required"] == ["query"]
        # Each assistant takes its graph's input schema, plus thread_id; a graph with
        # `messages` also takes a plain `message`.
        notes = tools["notes"].input_schema  # a user's graph with `messages` in its state
        assert {"messages", "message", "notes", "approved", "thread_id"} <= set(notes["properties"])
        assert {"required": ["message"]} in notes["anyOf"]
        # The built-in graphs declare no object input schema: the chat form.
        for name in ("agent", "echo"):
            assert tools[name].input_schema["required"] == ["message"], name
            assert "thread_id" in tools[name].input_schema["properties"]
        nested = tools["nested"].input_schema
        assert set(nested["properties"]) == {"text", "steps", "thread_id"}
        assert "message" not in nested["properties"]


async def test_a_graph_runs_on_its_own_input(platform: Platform) -> None:
    async with connect(platform) as session:
        thread = new_id()
        result = await session.call_tool("nested", {"text": "quiet", "thread_id": thread})
        assert not result.is_error, text_of(result)
        assert isinstance(result.structured_content, dict)
        assert result.structured_content["values"] == {"text": "QUIET!", "steps": ["shout", "mark"]}
        assert result.structured_content["status"] == "success"
        assert '"QUIET!"' in text_of(result)
        async with httpx.AsyncClient(
            base_url=platform.gateway_url, headers={"x-api-key": dev_key(platform)}
        ) as http:
            state = (await http.get(f"/threads/{thread}/state")).json()
        assert state["values"]["text"] == "QUIET!"
        # The graph's own `messages` input, as the LangGraph API takes it.
        notes = await session.call_tool(
            "notes", {"messages": [{"role": "user", "content": "structured"}]}
        )
        assert not notes.is_error and text_of(notes).startswith("You said: structured")
        # A graph failing on its input is a tool error naming the failure.
        failed = await session.call_tool("nested", {"text": 5})
        assert failed.is_error and "failed" in text_of(failed)


async def test_call_an_assistant_on_a_thread(platform: Platform) -> None:
    async with connect(platform) as session:
        thread = new_id()
        first = await session.call_tool("echo", {"message": "ping one", "thread_id": thread})
        assert not first.is_error and text_of(first) == "ping one"
        assert isinstance(first.structured_content, dict)
        assert first.structured_content["thread_id"] == thread
        assert first.structured_content["status"] == "success"
        await session.call_tool("echo", {"message": "ping two", "thread_id": thread})
        async with httpx.AsyncClient(
            base_url=platform.gateway_url, headers={"x-api-key": dev_key(platform)}
        ) as http:
            messages = (await http.get(f"/api/v1/threads/{thread}/messages")).json()["messages"]
        assert [m["content"] for m in messages] == ["ping one"] * 2 + ["ping two"] * 2


async def test_search_and_the_agent_answer_with_citations(platform: Platform) -> None:
    async with connect(platform) as session:
        document_id = await upload(platform, "bikes.txt", DOC, "Bicycle shed rules")

        found = await session.call_tool("search_documents", {"query": "where do cargo bikes park"})
        assert not found.is_error
        assert isinstance(found.structured_content, dict)
        hits: list[dict[str, Any]] = found.structured_content["hits"]
        assert hits[0]["document_id"] == document_id and "covered bay" in hits[0]["text"]

        steps: list[tuple[float, str | None]] = []

        async def progress(done: float, total: float | None, message: str | None) -> None:
            steps.append((done, message))

        answer = await session.call_tool(
            "agent", {"message": "Where do cargo bikes park?"}, progress_callback=progress
        )
        assert not answer.is_error, text_of(answer)
        assert "covered bay" in text_of(answer).lower()
        assert isinstance(answer.structured_content, dict)
        cited = {c["document_id"] for c in answer.structured_content["citations"]}
        assert document_id in cited
        # The run's steps arrived as progress before the answer, in order.
        said = [m for _, m in steps]
        assert "calling search_documents" in said and said[-1] == "run success", said
        assert [d for d, _ in steps] == sorted({d for d, _ in steps})
        # Each cited page is a resource the client can read.
        links = [c for c in answer.content if isinstance(c, types.ResourceLink)]
        assert document_uri(document_id) in {str(link.uri) for link in links}
        read = await session.read_resource(document_uri(document_id))
        (content,) = read.contents
        assert isinstance(content, types.TextResourceContents)
        assert content.text == DOC and content.mime_type == "text/plain"
        listed = (await session.list_resources()).resources
        mine = next(r for r in listed if str(r.uri) == document_uri(document_id))
        assert mine.title == "Bicycle shed rules" and mine.name == document_id
        templates = (await session.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} == {
            "agentbus://documents/{document_id}",
            "agentbus://documents/{document_id}/pages/{page}",
        }


async def test_resources_are_the_tenants_own(platform: Platform) -> None:
    mine = await upload(platform, "shed.txt", "The shed key hangs by the door.", "Shed key")
    async with connect(platform) as session:
        for uri in (
            document_uri("no-such-document"),
            "agentbus://documents/../etc",
            "file:///etc/passwd",
            "agentbus://documents/x/pages/0",
        ):
            with pytest.raises(MCPError) as missing:
                await session.read_resource(uri)
            assert missing.value.error.code == types.INVALID_PARAMS, uri
            assert "Resource not found" in missing.value.error.message
        assert (await session.read_resource(document_uri(mine))).contents
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        body = {"email": f"mcp-{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD}
        assert (await http.post("/api/v1/auth/register", json=body)).status_code == 201
        token = (await http.post("/api/v1/auth/login", json=body)).json()["access_token"]
    async with connect(platform, {"Authorization": f"Bearer {token}"}) as other:
        assert (await other.list_resources()).resources == []
        with pytest.raises(MCPError) as hidden:
            await other.read_resource(document_uri(mine))
        assert "Resource not found" in hidden.value.error.message


async def test_prompts_pack_the_tenants_passages(platform: Platform) -> None:
    async with connect(platform) as session:
        document_id = await upload(platform, "kiln.md", KILN, "Kiln safety")
        prompts = {p.name: p for p in (await session.list_prompts()).prompts}
        assert set(prompts) == {"answer_from_documents", "summarize_document"}
        packed = await session.get_prompt(
            "answer_from_documents", {"question": "How hot does the kiln get?", "top_k": "3"}
        )
        *passages, question = packed.messages
        assert passages and len(passages) <= 3
        first = passages[0].content
        assert isinstance(first, types.EmbeddedResource)
        assert isinstance(first.resource, types.TextResourceContents)
        assert first.resource.text.startswith("[1] Kiln safety") and "1260" in first.resource.text
        assert str(first.resource.uri) == document_uri(document_id)
        assert isinstance(question.content, types.TextContent)
        assert question.content.text.endswith("Question: How hot does the kiln get?")
        assert "[n]" in question.content.text

        summary = await session.get_prompt("summarize_document", {"document_id": document_id})
        embedded, ask = summary.messages
        assert isinstance(embedded.content, types.EmbeddedResource)
        assert isinstance(embedded.content.resource, types.TextResourceContents)
        assert "1260" in embedded.content.resource.text
        assert isinstance(ask.content, types.TextContent) and ask.content.text.startswith(
            "Summarize"
        )

        for name, arguments in (
            ("answer_from_documents", {}),
            ("answer_from_documents", {"question": "kiln", "top_k": "500"}),
            ("summarize_document", {"document_id": "no-such-document"}),
            ("summarize_document", {"document_id": document_id, "page": "x"}),
            ("nope", {}),
        ):
            with pytest.raises(MCPError) as refused:
                await session.get_prompt(name, arguments)
            assert refused.value.error.code == types.INVALID_PARAMS, (name, arguments)


async def test_bad_calls_are_tool_errors(platform: Platform) -> None:
    async with connect(platform) as session:
        unknown = await session.call_tool("nope", {"message": "hi"})
        assert unknown.is_error
        empty = await session.call_tool("echo", {"message": "  "})
        assert empty.is_error and "message" in text_of(empty)
        # Arguments outside the tool's input schema are refused by the SDK's server itself.
        with pytest.raises(MCPError) as refused:
            await session.call_tool("echo", {"message": "hi", "thread_id": "a/b"})
        assert refused.value.error.code == types.INVALID_PARAMS


async def test_the_gateway_credentials_are_required(platform: Platform) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with httpx.AsyncClient(base_url=platform.gateway_url) as http:
        anonymous = await http.post("/mcp", json=body)
        wrong = await http.post("/mcp", json=body, headers={"x-api-key": "ab_wrong"})
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
