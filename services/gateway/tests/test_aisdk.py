"""The AI SDK adapter with the `ai` npm package's own DefaultChatTransport and
readUIMessageStream (tests/node/aisdk_chat.mjs) against the real platform: every chunk passes the
package's schema, the text and the sources arrive, a dropped stream resumes and loses no run."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentbus.contracts import new_id
from agentbus.runtime.platform import Platform

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).parent / "node"
DOC = (
    "Greenhouse handbook. The orchid greenhouse is misted every morning at six. "
    "The cactus greenhouse is watered once a fortnight, on Fridays."
)


def dev_key(platform: Platform) -> str:
    return (platform.data_dir / "dev-api-key").read_text().strip()


@pytest.fixture
async def http(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=platform.gateway_url, headers={"x-api-key": dev_key(platform)}, timeout=120
    ) as client:
        yield client


async def node(
    platform: Platform, chat_id: str, question: str, mode: str, assistant: str = "agent"
) -> dict[str, Any]:
    assert shutil.which("node"), "node is required (make test installs the npm packages)"
    assert (NODE_DIR / "node_modules" / "ai").is_dir(), "run `make node-tests` (npm ci)"
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / "aisdk_chat.mjs"),
        platform.gateway_url,
        dev_key(platform),
        chat_id,
        question,
        mode,
        assistant,
        cwd=NODE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def upload(http: httpx.AsyncClient) -> str:
    response = await http.post(
        "/api/v1/documents",
        files={"file": ("greenhouse.txt", DOC.encode(), "text/plain")},
        data={"title": "Greenhouse handbook"},
    )
    assert response.status_code == 202, response.text
    doc = response.json()
    async with http.stream("GET", doc["events"]) as events:
        body = (await events.aread()).decode()
    assert "event: indexed" in body, body
    return str(doc["document_id"])


async def test_use_chat_transport_reads_text_sources_and_tools(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    document_id = await upload(http)
    chat_id = new_id()
    got = await node(platform, chat_id, "When is the orchid greenhouse misted?", "send")
    [response] = got["responses"]
    assert response["status"] == 200 and response["stream_header"] == "v1"
    assert response["content_type"].startswith("text/event-stream") and response["ends_with_done"]
    types = got["types"]
    assert types[0] == "start" and types[-1] == "finish"
    assert {"start-step", "text-start", "text-delta", "text-end", "finish-step"} <= set(types)
    assert {"tool-input-start", "tool-input-available", "tool-output-available"} <= set(types)
    assert {"data-routing", "data-model-selection", "source-url"} <= set(types)
    assert types.count("start-step") == types.count("finish-step")
    assert "six" in got["text"].lower()
    urls = [s["url"] for s in got["sources"]]
    assert any(f"/api/v1/documents/{document_id}" in u for u in urls), urls
    assert got["tools"][0]["toolName"] == "search_documents"
    assert got["tools"][0]["state"] == "output-available"
    assert got["metadata"]["thread_id"] == chat_id and got["metadata"]["status"] == "success"
    # The chat id is the thread: the turn is in its messages.
    thread = await http.get(f"/api/v1/threads/{chat_id}/messages")
    contents = [m["content"] for m in thread.json()["messages"]]
    assert contents[0] == "When is the orchid greenhouse misted?"


async def test_dropped_stream_resumes_from_the_start_and_the_run_completes(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    # A slow run holds the thread, so the chat's run waits its turn (enqueue) while the client
    # drops its response after the first chunk and reconnects.
    chat_id = new_id()
    busy = await http.post(
        f"/threads/{chat_id}/runs",
        json={
            "assistant_id": "steps",
            "input": {"steps": 5, "delay": 1.0},
            "if_not_exists": "create",
        },
    )
    assert busy.status_code == 200, busy.text
    got = await node(platform, chat_id, "say these words back", "drop-and-resume", "echo")
    assert got["dropped_after"] == ["start"] and got["resumed"] is True
    assert got["types"][0] == "start" and got["types"][-1] == "finish"
    assert got["metadata"]["status"] == "success"
    assert got["text"].strip() == "say these words back"
    assert got["after_end"] is None  # nothing active any more: 204
    assert [r["status"] for r in got["responses"]] == [200, 200, 204]
    assert got["responses"][1]["ends_with_done"]


async def test_regenerate_runs_the_last_user_message_again(
    platform: Platform, http: httpx.AsyncClient
) -> None:
    chat_id = new_id()
    got = await node(platform, chat_id, "again and again", "regenerate", "echo")
    assert got["first"]["text"].strip() == "again and again"
    assert got["text"].strip() == "again and again"
    assert got["message_id"] != got["first"]["message_id"]  # a new run, a new message
    messages = (await http.get(f"/api/v1/threads/{chat_id}/messages")).json()["messages"]
    assert [m["content"] for m in messages] == ["again and again"] * 4


async def test_bad_requests_are_refused(http: httpx.AsyncClient) -> None:
    no_user = await http.post(
        "/api/chat",
        json={"id": "c1", "messages": [{"id": "a", "role": "assistant", "parts": []}]},
    )
    assert no_user.status_code == 422 and "user message" in no_user.json()["detail"]
    bad_id = await http.post(
        "/api/chat",
        json={"id": "../x", "messages": [{"id": "a", "role": "user", "parts": []}]},
    )
    assert bad_id.status_code == 422
    unknown = await http.post(
        "/api/chat",
        json={
            "id": "c2",
            "assistant_id": "nope",
            "messages": [{"id": "a", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
        },
    )
    assert unknown.status_code == 404
    assert (await http.get(f"/api/chat/{new_id()}/stream")).status_code == 204
    anonymous = await http.post("/api/chat", json={}, headers={"x-api-key": ""})
    assert anonymous.status_code == 401
